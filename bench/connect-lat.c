// connect() latency as an application sees it: N blocking TCP connect() calls to HOST:PORT in a
// tight loop, each timed alone with clock_gettime(CLOCK_MONOTONIC) around the call (the socket is
// made before and closed after the clock stops), after WARMUP untimed connects. Each socket is
// closed with SO_LINGER 0 (a reset, no TIME_WAIT): the bench makes ~40k connects from one
// namespace to one backend within seconds, and once TIME_WAIT holds most of the port range every
// connect() also recycles a TIME_WAIT port, which added 1.5-3 µs to each variant alike (measured:
// a direct connect's median went from 7.1 to 8.6 µs as TIME_WAIT grew to 27k sockets) — the
// kernel's port allocation, not the datapath under test. Stops after N
// timed connects or MAX_MS, whichever comes first; a connect that takes more than 2 s fails
// (SO_SNDTIMEO) and alarm() ends a stuck run. Prints one JSON line:
//   {"n":..,"median":..,"p99":..,"mean":..,"min":..,"errors":{"ECONNREFUSED":..}}  (µs)
// and with SAMPLES 1 also every timed connect, in the order measured: ..,"samples":[..]} (so that
// runs can be pooled). Built by bench/services.bench.ts into build/bench/ (cc -O2); run inside
// the bench's netns/cgroup.
// Usage: connect-lat HOST PORT N MAX_MS [WARMUP [SAMPLES]]

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_N 100000
#define MAX_ERRNO 256

static double now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

// One connect: 0 and its duration in µs, or an errno.
static int once(const struct sockaddr_in *to, double *us)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	struct timeval tv = { .tv_sec = 2 };
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	struct linger reset = { .l_onoff = 1, .l_linger = 0 };
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
	double t0 = now_us();
	int rc = connect(fd, (const struct sockaddr *)to, sizeof(*to));
	double t1 = now_us();
	int err = rc ? errno : 0;
	close(fd);
	*us = t1 - t0;
	return err;
}

int main(int argc, char **argv)
{
	if (argc < 5 || argc > 7) {
		fprintf(stderr, "usage: connect-lat HOST PORT N MAX_MS [WARMUP [SAMPLES]]\n");
		return 2;
	}
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[2])) };
	if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) {
		fprintf(stderr, "connect-lat: bad address %s\n", argv[1]);
		return 2;
	}
	long n = atol(argv[3]), max_ms = atol(argv[4]), warmup = argc >= 6 ? atol(argv[5]) : 200;
	int samples = argc == 7 ? atoi(argv[6]) : 0;
	if (n < 1 || n > MAX_N || max_ms < 1 || warmup < 0 || warmup > MAX_N || (samples != 0 && samples != 1)) {
		fprintf(stderr, "connect-lat: N in 1..%d, MAX_MS >= 1, WARMUP in 0..%d, SAMPLES 0 or 1\n", MAX_N, MAX_N);
		return 2;
	}
	alarm((unsigned)(max_ms / 1000 + 30)); // a stuck run ends (SIGALRM) instead of hanging the bench
	double *times = malloc((size_t)n * sizeof(double));
	double *sorted = malloc((size_t)n * sizeof(double));
	long errors[MAX_ERRNO] = { 0 };
	if (!times || !sorted)
		return 1;
	double us;
	for (long i = 0; i < warmup; i++)
		once(&to, &us);
	long got = 0;
	double end = now_us() + (double)max_ms * 1e3;
	for (long i = 0; i < n && now_us() < end; i++) {
		int err = once(&to, &us);
		if (err == 0)
			times[got++] = us;
		else
			errors[err < MAX_ERRNO ? err : 0]++;
	}
	memcpy(sorted, times, (size_t)got * sizeof(double));
	qsort(sorted, (size_t)got, sizeof(double), cmp);
	double sum = 0;
	for (long i = 0; i < got; i++)
		sum += sorted[i];
	printf("{\"n\":%ld,\"median\":%.2f,\"p99\":%.2f,\"mean\":%.2f,\"min\":%.2f,\"errors\":{", got,
	       got ? sorted[got / 2] : 0.0, got ? sorted[(got * 99) / 100 < got ? (got * 99) / 100 : got - 1] : 0.0,
	       got ? sum / (double)got : 0.0, got ? sorted[0] : 0.0);
	int first = 1;
	for (int e = 0; e < MAX_ERRNO; e++) {
		if (!errors[e])
			continue;
		// SO_SNDTIMEO expiring makes connect() fail with EINPROGRESS: name it for what it is.
		printf("%s\"%s\":%ld", first ? "" : ",",
		       e == EINPROGRESS ? "timeout (> 2 s)" : e ? strerrorname_np(e) : "other", errors[e]);
		first = 0;
	}
	printf("}");
	if (samples) {
		printf(",\"samples\":[");
		for (long i = 0; i < got; i++)
			printf("%s%.2f", i ? "," : "", times[i]);
		printf("]");
	}
	printf("}\n");
	free(times);
	free(sorted);
	return 0;
}
