/* Test helpers for the SRV and resolver tests: a private dnsmasq on a free
 * loopback port, and a "black hole" DNS server (a bound UDP socket that is
 * never read) for timeouts. Loopback only. */
#ifndef UVMQTT_TEST_DNSTEST_H
#define UVMQTT_TEST_DNSTEST_H

#include <stddef.h>
#include <sys/types.h>

typedef struct {
  pid_t pid;
  int port;
  char dir[256]; /* temporary directory holding dnsmasq's log */
  char log[320];
} dt_dns_t;

/* Starts dnsmasq on 127.0.0.1:<free port> answering only from its command
 * line: args[0 .. n) are extra options such as
 * "--srv-host=_mqtt._tcp.x.test,a.x.test,1883,10,50" and
 * "--host-record=a.x.test,127.0.0.1". Every name under .test that is not
 * configured is NXDOMAIN. Waits (at most 5 s) until it answers a query.
 * Returns 0, or -1 (reason on stderr). */
int dt_dns_start(dt_dns_t *d, const char *const *args, size_t n);
/* Stops it by PID (SIGTERM, then SIGKILL after 2 s) and removes its
 * directory. Safe to call twice. */
void dt_dns_stop(dt_dns_t *d);
/* 1 when `dnsmasq` can be run. */
int dt_dns_available(void);
/* Prints dnsmasq's log on stderr (for failed tests). */
void dt_dns_dump_log(const dt_dns_t *d);

/* A UDP socket bound to 127.0.0.1:<free port> that is never read: a DNS
 * server that never answers. Returns the fd and writes the port, or -1. */
int dt_blackhole_open(int *port);

#endif
