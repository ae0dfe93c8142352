/* Round trip of one cache line between two CPUs, in nanoseconds.
 *
 * benchmarks/mnist.py compiles this with the system's C compiler (if there is one) and
 * runs it next to each timed fit. On a 2-vCPU virtual machine the two vCPUs can sit on
 * one core complex (a shared L3: a round trip of ~50-150 ns) or on two (~300-700 ns), and
 * the host moves them within seconds; two-thread training, where one thread reads what
 * the other just wrote at every step, runs at about half speed in the second case.
 *
 * Usage: core_latency CPU_A CPU_B [ROUND_TRIPS]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static _Atomic int flag __attribute__((aligned(64)));
static long round_trips = 100000;

static int pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *answer(void *cpu) {
    if (pin(*(int *)cpu) != 0) exit(2);
    for (long i = 0; i < round_trips; i++) {
        while (atomic_load_explicit(&flag, memory_order_acquire) != 1) {}
        atomic_store_explicit(&flag, 0, memory_order_release);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s CPU_A CPU_B [ROUND_TRIPS]\n", argv[0]);
        return 2;
    }
    int a = atoi(argv[1]), b = atoi(argv[2]);
    if (argc > 3) round_trips = atol(argv[3]);
    pthread_t other;
    if (pin(a) != 0 || pthread_create(&other, NULL, answer, &b) != 0) return 2;
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (long i = 0; i < round_trips; i++) {
        atomic_store_explicit(&flag, 1, memory_order_release);
        while (atomic_load_explicit(&flag, memory_order_acquire) != 0) {}
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    pthread_join(other, NULL);
    printf("%.1f\n", ((end.tv_sec - start.tv_sec) * 1e9 + (end.tv_nsec - start.tv_nsec)) / round_trips);
    return 0;
}
