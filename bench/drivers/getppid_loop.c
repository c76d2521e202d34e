/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * getppid_loop - the syscall load for the recorder, producer and soak
 * benchmarks: every getppid() fires syscalls:sys_enter_getppid, where the
 * test provider (or a bcc baseline program) emits one event.
 *
 *   getppid_loop [-t THREADS] [-s SECONDS] [-r RATE] [-c FIRSTCPU] [-g]
 *
 * -t  threads, thread i pinned to CPU (FIRSTCPU + i) % ncpu (default 1)
 * -s  run time in seconds (default 2)
 * -r  total calls per second, paced in 1 ms slices (default 0: flat out)
 * -g  wait for a line on stdin before starting, so that the caller can
 *     point the tracer at this pid first
 *
 * Prints one line: "calls=N seconds=S rate=R" (rate in calls/s, all threads).
 * A C loop because Python cannot issue millions of syscalls per second.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static atomic_int stop;
static double rate_per_thread;
static int first_cpu;

struct worker { pthread_t tid; int index; unsigned long calls; };

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *run(void *arg)
{
	struct worker *w = arg;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;
	unsigned long n = 0;

	CPU_ZERO(&set);
	CPU_SET((first_cpu + w->index) % ncpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	if (rate_per_thread <= 0) {
		/* syscall(), not getppid(): no libc caching, one real syscall each */
		while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
			for (int i = 0; i < 256; i++)
				syscall(SYS_getppid);
			n += 256;
		}
	} else {
		/* Paced: catch up to rate*elapsed, then sleep to the next ms. */
		double t0 = now();
		while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
			unsigned long due = (unsigned long)((now() - t0) * rate_per_thread);
			while (n < due) {
				syscall(SYS_getppid);
				n++;
			}
			struct timespec ms = { 0, 1000000 };
			nanosleep(&ms, NULL);
		}
	}
	w->calls = n;
	return NULL;
}

int main(int argc, char **argv)
{
	int threads = 1, gate = 0, opt;
	double seconds = 2, rate = 0;

	while ((opt = getopt(argc, argv, "t:s:r:c:g")) != -1) {
		switch (opt) {
		case 't': threads = atoi(optarg); break;
		case 's': seconds = atof(optarg); break;
		case 'r': rate = atof(optarg); break;
		case 'c': first_cpu = atoi(optarg); break;
		case 'g': gate = 1; break;
		default:
			fprintf(stderr, "usage: %s [-t threads] [-s seconds] [-r rate] [-c cpu] [-g]\n", argv[0]);
			return 2;
		}
	}
	if (gate) {
		char line[64];
		if (!fgets(line, sizeof(line), stdin))
			return 1;
	}
	rate_per_thread = rate / threads;
	struct worker *w = calloc(threads, sizeof(*w));
	double t0 = now();
	for (int i = 0; i < threads; i++) {
		w[i].index = i;
		pthread_create(&w[i].tid, NULL, run, &w[i]);
	}
	struct timespec ts = { (time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9) };
	nanosleep(&ts, NULL);
	atomic_store(&stop, 1);
	unsigned long total = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(w[i].tid, NULL);
		total += w[i].calls;
	}
	double el = now() - t0;
	printf("calls=%lu seconds=%.6f rate=%.0f\n", total, el, total / el);
	return 0;
}
