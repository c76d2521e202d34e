/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * connrate - short-connection load for the workload benchmark: how many
 * connect / send / close cycles per second a loopback TCP server and
 * client manage.  Run it inside a network namespace of its own
 * (ip netns exec NS connrate ...): it only ever talks to 127.0.0.1.
 *
 *   connrate [-s SECONDS] [-p PORT] [-b BYTES]
 *
 * The client connects, writes BYTES (default 64) and waits for the
 * server's close; the server reads the request and closes first, so the
 * TIME_WAIT sockets pile up on its side and never exhaust client ports.
 * Prints "calls=N seconds=S rate=R" (connections, connections/s).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int nbytes = 64;
static int listener;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *serve(void *arg)
{
	char buf[4096];
	(void)arg;
	for (;;) {
		int c = accept(listener, NULL, NULL);
		if (c < 0)
			return NULL;
		int got = 0;
		while (got < nbytes) {
			ssize_t n = read(c, buf, sizeof(buf));
			if (n <= 0)
				break;
			got += n;
		}
		close(c);
	}
}

int main(int argc, char **argv)
{
	double seconds = 3;
	int port = 5202, opt, one = 1;
	char buf[4096];

	while ((opt = getopt(argc, argv, "s:p:b:")) != -1) {
		switch (opt) {
		case 's': seconds = atof(optarg); break;
		case 'p': port = atoi(optarg); break;
		case 'b': nbytes = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: %s [-s seconds] [-p port] [-b bytes]\n", argv[0]);
			return 2;
		}
	}
	if (nbytes > (int)sizeof(buf))
		nbytes = sizeof(buf);
	memset(buf, 'x', sizeof(buf));
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	listener = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(listener, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(listener, 1024) < 0) {
		perror("bind/listen");
		return 1;
	}
	pthread_t t;
	pthread_create(&t, NULL, serve, NULL);

	unsigned long conns = 0;
	double t0 = now(), end = t0 + seconds;
	while (now() < end) {
		int c = socket(AF_INET, SOCK_STREAM, 0);
		if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			perror("connect");
			return 1;
		}
		if (write(c, buf, nbytes) != nbytes) {
			perror("write");
			return 1;
		}
		while (read(c, buf, sizeof(buf)) > 0)   /* until the server closes */
			;
		close(c);
		conns++;
	}
	double el = now() - t0;
	printf("calls=%lu seconds=%.6f rate=%.0f\n", conns, el, conns / el);
	return 0;
}
