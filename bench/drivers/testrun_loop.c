/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * testrun_loop - batch event load without a syscall hook: runs a loaded
 * raw-tracepoint BPF program over and over with BPF_PROG_TEST_RUN, each run
 * emitting a batch of events (the test provider's test_ctl with OP_EMIT, or
 * bench/bcc_record.py's emit_batch), so the rings and recorders can be fed
 * faster than a traced syscall loop can (the syscalls:sys_enter hook itself
 * costs a few hundred ns per call on the VMs we run on).
 *
 *   testrun_loop -p PROG_ID [-t THREADS] [-s SECONDS] [-r RATE] [-n BATCH] [-i SESSION]
 *
 * -r  total events per second, paced in 1 ms slices (default 0: flat out)
 *
 * The program's u64 arguments are those of test_ctl:
 *   [0]=2 (OP_EMIT) [1]=session [2]=0 (SIMPLE_EVENT) [3]=batch [4]=seq
 * and its return value is the number of events it emitted.
 * Thread i is pinned to CPU i % ncpu. Prints "calls=N seconds=S rate=R"
 * where N counts events (sum of return values), R events/s.
 */
#define _GNU_SOURCE
#include <linux/bpf.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static atomic_int stop;
static int prog_fd;
static uint64_t batch = 32, session = 1;
static double rate_per_thread;

struct worker { pthread_t tid; int index; unsigned long events; int err; };

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long bpf(int cmd, union bpf_attr *attr)
{
	return syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

static void *run(void *arg)
{
	struct worker *w = arg;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	uint64_t ctx[12] = { 2, session, 0, batch, 0 };
	union bpf_attr attr;
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(w->index % ncpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	ctx[4] = (uint64_t)w->index << 40;   /* distinct sequence ranges per thread */
	double t0 = now();
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		if (rate_per_thread > 0 && w->events >= (now() - t0) * rate_per_thread) {
			/* Paced and ahead of schedule: sleep to the next ms. */
			struct timespec ms = { 0, 1000000 };
			nanosleep(&ms, NULL);
			continue;
		}
		memset(&attr, 0, sizeof(attr));
		attr.test.prog_fd = prog_fd;
		attr.test.ctx_in = (uint64_t)(uintptr_t)ctx;
		attr.test.ctx_size_in = sizeof(ctx);
		if (bpf(BPF_PROG_TEST_RUN, &attr) < 0) {
			w->err = 1;
			break;
		}
		int32_t n = (int32_t)attr.test.retval;
		if (n < 0) {
			w->err = 1;
			break;
		}
		w->events += n;
		ctx[4] += n;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int threads = 1, opt;
	unsigned prog_id = 0;
	double seconds = 2;
	union bpf_attr attr;

	double rate = 0;

	while ((opt = getopt(argc, argv, "p:t:s:r:n:i:")) != -1) {
		switch (opt) {
		case 'r': rate = atof(optarg); break;
		case 'p': prog_id = strtoul(optarg, NULL, 0); break;
		case 't': threads = atoi(optarg); break;
		case 's': seconds = atof(optarg); break;
		case 'n': batch = strtoull(optarg, NULL, 0); break;
		case 'i': session = strtoull(optarg, NULL, 0); break;
		default:
			fprintf(stderr, "usage: %s -p prog_id [-t threads] [-s seconds] [-r rate] [-n batch] [-i session]\n", argv[0]);
			return 2;
		}
	}
	rate_per_thread = rate / threads;
	memset(&attr, 0, sizeof(attr));
	attr.prog_id = prog_id;
	prog_fd = bpf(BPF_PROG_GET_FD_BY_ID, &attr);
	if (prog_fd < 0) {
		perror("BPF_PROG_GET_FD_BY_ID");
		return 1;
	}
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
	int err = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(w[i].tid, NULL);
		total += w[i].events;
		err |= w[i].err;
	}
	double el = now() - t0;
	printf("calls=%lu seconds=%.6f rate=%.0f\n", total, el, total / el);
	if (err)
		fprintf(stderr, "testrun_loop: BPF_PROG_TEST_RUN failed\n");
	return err;
}
