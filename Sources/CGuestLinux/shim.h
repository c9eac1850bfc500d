// Linux declarations cmk-guest needs that Swift's Glibc module leaves out: reboot(2) and RB_POWER_OFF.
#include <sys/reboot.h>
