{
  "targets": [
    {
      "target_name": "tslayer",
      "sources": ["addon.cc", "mount.cc", "xattr.cc", "fsops.cc", "btrfs.cc", "scan.cc", "readfiles.cc", "apply.cc", "apply_entry.cc", "apply_resolve.cc", "apply_fs.cc", "btrfs_info.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
