// Linux calls the coordinator needs that Swift's Glibc module leaves out (it is built without _GNU_SOURCE):
// sched_setaffinity(2) on one thread, through the raw system call, with the mask as bytes.
#include <sys/syscall.h>
#include <unistd.h>

/// Sets the CPU affinity of thread `tid` to the `size` bytes of `mask` (bit n = CPU n). 0, or -1 with errno set.
static inline int cmk_sched_setaffinity(int tid, unsigned long size, const unsigned char *mask) {
    return (int)syscall(SYS_sched_setaffinity, tid, size, mask);
}
