// SPDX-License-Identifier: BSD-2-Clause
/*
 * libbpf_ringbuf - the strongest peer of pyelog's recorder: what a
 * libbpf-tools-style C tool achieves with a BPF ring buffer. Opens the ring
 * buffer map pinned at PIN (bench/bcc_record.py --mode libbpf loads the
 * program and pins its map), polls it with libbpf's ring_buffer__poll, and
 * appends each raw event to OUT through a 1 MiB stdio buffer, until SIGTERM
 * or SIGINT; then consumes what is left and prints "written=N".
 *
 *   libbpf_ringbuf PIN OUT        (prints "ready" once polling)
 *
 * Built at bench time: gcc -O2 ... -lbpf (Debian's libbpf-dev).
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static volatile sig_atomic_t stop;
static FILE *out;
static unsigned long long written;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int on_event(void *ctx, void *data, size_t size)
{
	(void)ctx;
	if (fwrite(data, size, 1, out) != 1)
		return -EIO;
	written++;
	return 0;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	struct ring_buffer *rb;
	int fd, err = 0;

	if (argc != 3) {
		fprintf(stderr, "usage: %s PIN OUT\n", argv[0]);
		return 2;
	}
	fd = bpf_obj_get(argv[1]);
	if (fd < 0) {
		fprintf(stderr, "libbpf_ringbuf: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	out = fopen(argv[2], "wb");
	if (!out || setvbuf(out, NULL, _IOFBF, 1 << 20)) {
		fprintf(stderr, "libbpf_ringbuf: %s: %s\n", argv[2], strerror(errno));
		return 1;
	}
	rb = ring_buffer__new(fd, on_event, NULL, NULL);
	if (!rb) {
		fprintf(stderr, "libbpf_ringbuf: ring_buffer__new: %s\n", strerror(errno));
		return 1;
	}
	/* No SA_RESTART: the signal ends the poll (-EINTR) at once. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	printf("ready\n");
	fflush(stdout);
	while (!stop) {
		err = ring_buffer__poll(rb, 100);
		if (err < 0 && err != -EINTR)
			break;
		err = 0;
	}
	if (!err)
		err = ring_buffer__consume(rb) < 0;
	ring_buffer__free(rb);
	if (fclose(out))
		err = 1;
	printf("written=%llu\n", written);
	return err ? 1 : 0;
}
