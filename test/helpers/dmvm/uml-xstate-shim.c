/*
 * LD_PRELOAD shim that lets Debian's user-mode Linux 6.1 (linux.uml) run on hosts with
 * AMX (Sapphire Rapids and later): without it every guest process dies at its first
 * context switch ("Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b").
 *
 * UML saves and restores each guest task's FP/vector state with
 * PTRACE_{GET,SET}REGSET(NT_X86_XSTATE), in a buffer sized from CPUID: here 2696 bytes,
 * enough for x87/SSE/AVX/AVX-512. The host kernel's XSAVE image is larger (~11 KiB), since
 * it also holds the AMX tile registers (enabled on demand). A short GET is fine (the kernel
 * truncates it), but the kernel refuses a SET of any size but its full one (EFAULT), and UML
 * then kills the task.
 *
 * Guest processes cannot use AMX under UML (its arch_prctl has no ARCH_REQ_XCOMP_PERM), so
 * their AMX state is always the initial one. So SET is widened here: UML's bytes, zeros up
 * to the kernel's size, and the state-component bits (XSTATE_BV) of every component that
 * does not fit in UML's buffer cleared, which tells the kernel to put those components in
 * their initial state. Every other ptrace call passes through unchanged.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

#define NT_X86_XSTATE 0x202
#define XSTATE_BV_OFFSET 512
#define MAX_XSTATE (64 * 1024) /* above any host XSAVE size today */

typedef long (*ptrace_fn)(enum __ptrace_request, pid_t, void *, void *);

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned char big[MAX_XSTATE] __attribute__((aligned(64)));
static size_t kernel_size; /* the host kernel's NT_X86_XSTATE size, learnt from a GET */

static ptrace_fn real_ptrace(void)
{
	static ptrace_fn fn;
	if (!fn)
		fn = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");
	return fn;
}

/* XSTATE_BV bits of the components (2..62) that end beyond the first n bytes. */
static uint64_t components_beyond(size_t n)
{
	uint64_t mask = 0;
	unsigned a, b, c, d;
	for (unsigned i = 2; i < 63; i++) {
		__cpuid_count(0xd, i, a, b, c, d);
		if (a != 0 && (size_t)b + a > n)
			mask |= 1ULL << i;
	}
	return mask;
}

static long xstate(enum __ptrace_request req, pid_t pid, struct iovec *uml)
{
	if (req == PTRACE_GETREGSET || kernel_size == 0) {
		struct iovec full = { big, sizeof big };
		if (real_ptrace()(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &full) < 0)
			return -1;
		kernel_size = full.iov_len;
		if (req == PTRACE_GETREGSET) {
			size_t n = uml->iov_len < full.iov_len ? uml->iov_len : full.iov_len;
			memcpy(uml->iov_base, big, n);
			uml->iov_len = n;
			return 0;
		}
	}
	if (uml->iov_len >= kernel_size || uml->iov_len < XSTATE_BV_OFFSET + 8)
		return real_ptrace()(PTRACE_SETREGSET, pid, (void *)NT_X86_XSTATE, uml);
	static size_t masked_for;
	static uint64_t beyond;
	if (masked_for != uml->iov_len) {
		beyond = components_beyond(uml->iov_len);
		masked_for = uml->iov_len;
	}
	uint64_t bv;
	memcpy(big, uml->iov_base, uml->iov_len);
	memset(big + uml->iov_len, 0, kernel_size - uml->iov_len);
	memcpy(&bv, big + XSTATE_BV_OFFSET, sizeof bv);
	bv &= ~beyond;
	memcpy(big + XSTATE_BV_OFFSET, &bv, sizeof bv);
	struct iovec full = { big, kernel_size };
	return real_ptrace()(PTRACE_SETREGSET, pid, (void *)NT_X86_XSTATE, &full);
}

long ptrace(enum __ptrace_request req, ...)
{
	va_list ap;
	va_start(ap, req);
	pid_t pid = va_arg(ap, pid_t);
	void *addr = va_arg(ap, void *);
	void *data = va_arg(ap, void *);
	va_end(ap);

	if ((req == PTRACE_GETREGSET || req == PTRACE_SETREGSET) && (uintptr_t)addr == NT_X86_XSTATE && data) {
		pthread_mutex_lock(&mu);
		long r = xstate(req, pid, data);
		int e = errno;
		pthread_mutex_unlock(&mu);
		errno = e;
		return r;
	}
	return real_ptrace()(req, pid, addr, data);
}
