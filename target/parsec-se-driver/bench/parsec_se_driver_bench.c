/*
 * parsec-se-driver-bench: a load generator that verifies signatures the way a C client of the
 * demo does, through Mbed TLS's PSA API and the Parsec SE driver.
 *
 *   parsec-se-driver-bench [--key rsa2048|p256] [--processes N] [--seconds S] [--socket PATH]
 *
 * The parent generates a key pair in the PSA core (local storage), hashes and signs a fixed
 * message once and exports the public key. Then N client processes each register the driver,
 * initialise PSA, import that public key once as a volatile key in the secure-element location
 * (as Mbed TLS's pk_wrap does with the demo's patches), check that the service refuses the
 * signature with one bit flipped and accepts the right one, and, once all are ready, call
 * psa_verify_hash in a loop for S seconds, checking PSA_SUCCESS every time; each call's latency
 * is measured with CLOCK_MONOTONIC. Each process destroys its key at the end.
 *
 * The parent prints one JSON line: the total count, the aggregate rate (the sum of each
 * process's count over its own measured time), p50 and p99 latency over all calls, the CPU
 * time the client processes used while measuring (user + system), and each process's count.
 * A failure is one line on stderr and exit status 1.
 *
 * The service is PARSEC_SERVICE_ENDPOINT (unix:/path), else the driver's default
 * (/run/parsec/parsec.sock); --socket PATH sets it. The PSA core keeps the secure element's
 * state files in the working directory, so each process works in its own directory under a
 * fresh temporary one ($TMPDIR, else /tmp), removed at the end.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "parsec_se_driver.h"

#define PROGRAM "parsec-se-driver-bench"
#define MAX_PROCESSES 256
#define WARM_UP_CALLS 10
#define MESSAGE "parsec-se-driver-bench"
#define READY_BYTE 'R'
#define GO_BYTE 'G'

typedef struct {
    const char *name;
    psa_key_type_t pair_type;
    psa_key_type_t public_type;
    size_t bits;
    psa_algorithm_t alg;
} key_kind_t;

static const key_kind_t KEY_KINDS[] = {
    {"rsa2048", PSA_KEY_TYPE_RSA_KEY_PAIR, PSA_KEY_TYPE_RSA_PUBLIC_KEY, 2048,
     PSA_ALG_RSA_PKCS1V15_SIGN(PSA_ALG_SHA_256)},
    {"p256", PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_SECP_R1),
     PSA_KEY_TYPE_ECC_PUBLIC_KEY(PSA_ECC_FAMILY_SECP_R1), 256, PSA_ALG_ECDSA(PSA_ALG_SHA_256)},
};

typedef struct {
    const key_kind_t *kind;
    unsigned int processes;
    double seconds;
} options_t;

/* What every client process verifies, made once by the parent. */
typedef struct {
    uint8_t public_key[PSA_EXPORT_PUBLIC_KEY_MAX_SIZE];
    size_t public_key_length;
    uint8_t hash[PSA_HASH_MAX_SIZE];
    size_t hash_length;
    uint8_t signature[PSA_SIGNATURE_MAX_SIZE];
    size_t signature_length;
} workload_t;

/* What a client process sends back after its run, followed by `count` latencies in ns. */
typedef struct {
    uint64_t count;
    uint64_t elapsed_ns;
    uint64_t cpu_ns;  /* the process's user and system CPU time during the run */
} run_header_t;

static uint64_t now_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t) now.tv_sec * 1000000000u + (uint64_t) now.tv_nsec;
}

static uint64_t cpu_ns(void)
{
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return ((uint64_t) usage.ru_utime.tv_sec + (uint64_t) usage.ru_stime.tv_sec) * 1000000000u +
           ((uint64_t) usage.ru_utime.tv_usec + (uint64_t) usage.ru_stime.tv_usec) * 1000u;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: " PROGRAM " [--key rsa2048|p256] [--processes N] [--seconds S]"
                 " [--socket PATH]\n");
}

static int fail_usage(const char *what, const char *value)
{
    fprintf(stderr, PROGRAM ": %s: %s\n", what, value);
    usage(stderr);
    return 2;
}

/* Sets PARSEC_SERVICE_ENDPOINT to unix:<absolute path>: the client processes change their
 * working directory, so a relative socket path is made absolute first. */
static int set_endpoint(const char *path)
{
    char cwd[PATH_MAX];
    char endpoint[PATH_MAX + 8];
    int written;
    if (path[0] == '/') {
        written = snprintf(endpoint, sizeof(endpoint), "unix:%s", path);
    } else {
        if (getcwd(cwd, sizeof(cwd)) == NULL) {
            fprintf(stderr, PROGRAM ": cannot read the working directory: %s\n", strerror(errno));
            return -1;
        }
        written = snprintf(endpoint, sizeof(endpoint), "unix:%s/%s", cwd, path);
    }
    if (written < 0 || (size_t) written >= sizeof(endpoint)) {
        fprintf(stderr, PROGRAM ": socket path too long: %s\n", path);
        return -1;
    }
    if (setenv("PARSEC_SERVICE_ENDPOINT", endpoint, 1) != 0) {
        fprintf(stderr, PROGRAM ": cannot set PARSEC_SERVICE_ENDPOINT: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

static int parse_options(int argc, char **argv, options_t *options)
{
    int i;
    const char *endpoint = getenv("PARSEC_SERVICE_ENDPOINT");
    const char *socket_path = NULL;
    options->kind = &KEY_KINDS[0];
    options->processes = 1;
    options->seconds = 3.0;
    for (i = 1; i < argc; i++) {
        const char *name = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (value == NULL) {
            return fail_usage("missing value or unknown option", name);
        }
        i++;
        if (strcmp(name, "--key") == 0) {
            size_t k;
            options->kind = NULL;
            for (k = 0; k < sizeof(KEY_KINDS) / sizeof(KEY_KINDS[0]); k++) {
                if (strcmp(value, KEY_KINDS[k].name) == 0) {
                    options->kind = &KEY_KINDS[k];
                }
            }
            if (options->kind == NULL) {
                return fail_usage("--key must be rsa2048 or p256, not", value);
            }
        } else if (strcmp(name, "--processes") == 0) {
            long processes = strtol(value, &end, 10);
            if (*end != '\0' || processes < 1 || processes > MAX_PROCESSES) {
                return fail_usage("--processes must be an integer from 1 to 256, not", value);
            }
            options->processes = (unsigned int) processes;
        } else if (strcmp(name, "--seconds") == 0) {
            options->seconds = strtod(value, &end);
            if (*end != '\0' || !(options->seconds > 0.0 && options->seconds <= 3600.0)) {
                return fail_usage("--seconds must be a number in (0, 3600], not", value);
            }
        } else if (strcmp(name, "--socket") == 0) {
            socket_path = value;
        } else {
            return fail_usage("unknown option", name);
        }
    }
    if (socket_path == NULL && endpoint != NULL && strncmp(endpoint, "unix:", 5) == 0) {
        socket_path = endpoint + 5;
    }
    if (socket_path != NULL && set_endpoint(socket_path) != 0) {
        return 1;
    }
    return 0;
}

static int psa_failed(const char *who, const char *what, psa_status_t status)
{
    fprintf(stderr, PROGRAM ": %s: %s failed: PSA status %d\n", who, what, (int) status);
    return 1;
}

/* The parent's part: a key pair in the PSA core, the hash of MESSAGE, its signature, and the
 * public key to import. */
static int make_workload(const key_kind_t *kind, workload_t *workload)
{
    psa_key_attributes_t attributes = PSA_KEY_ATTRIBUTES_INIT;
    psa_key_id_t key = PSA_KEY_ID_NULL;
    psa_status_t status = psa_crypto_init();
    const char *step = "psa_crypto_init";
    if (status == PSA_SUCCESS) {
        psa_set_key_type(&attributes, kind->pair_type);
        psa_set_key_bits(&attributes, kind->bits);
        psa_set_key_usage_flags(&attributes, PSA_KEY_USAGE_SIGN_HASH);
        psa_set_key_algorithm(&attributes, kind->alg);
        step = "psa_generate_key";
        status = psa_generate_key(&attributes, &key);
    }
    if (status == PSA_SUCCESS) {
        step = "psa_hash_compute";
        status = psa_hash_compute(PSA_ALG_SHA_256, (const uint8_t *) MESSAGE, strlen(MESSAGE),
                                  workload->hash, sizeof(workload->hash), &workload->hash_length);
    }
    if (status == PSA_SUCCESS) {
        step = "psa_sign_hash";
        status = psa_sign_hash(key, kind->alg, workload->hash, workload->hash_length,
                               workload->signature, sizeof(workload->signature),
                               &workload->signature_length);
    }
    if (status == PSA_SUCCESS) {
        step = "psa_export_public_key";
        status = psa_export_public_key(key, workload->public_key, sizeof(workload->public_key),
                                       &workload->public_key_length);
    }
    if (key != PSA_KEY_ID_NULL) {
        psa_destroy_key(key);
    }
    mbedtls_psa_crypto_free();
    return status == PSA_SUCCESS ? 0 : psa_failed("the signing key", step, status);
}

static int write_all(int fd, const void *data, size_t length)
{
    const uint8_t *bytes = data;
    while (length > 0) {
        ssize_t written = write(fd, bytes, length);
        if (written < 0 && errno == EINTR) {
            continue;
        }
        if (written <= 0) {
            return -1;
        }
        bytes += written;
        length -= (size_t) written;
    }
    return 0;
}

/* 0: `length` bytes read; -1: an error or the end of the stream first. */
static int read_all(int fd, void *data, size_t length)
{
    uint8_t *bytes = data;
    while (length > 0) {
        ssize_t got = read(fd, bytes, length);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            return -1;
        }
        bytes += got;
        length -= (size_t) got;
    }
    return 0;
}

typedef struct {
    uint64_t *values;
    size_t count;
    size_t capacity;
} latencies_t;

/* Room for `more` values after the `count` there are. */
static int reserve_latencies(latencies_t *latencies, size_t more)
{
    size_t capacity = latencies->capacity ? latencies->capacity : 4096;
    uint64_t *values;
    if (more > SIZE_MAX / sizeof(uint64_t) / 2 - latencies->count) {
        return -1;
    }
    while (capacity < latencies->count + more) {
        capacity *= 2;
    }
    if (capacity == latencies->capacity) {
        return 0;
    }
    values = realloc(latencies->values, capacity * sizeof(*values));
    if (values == NULL) {
        return -1;
    }
    latencies->values = values;
    latencies->capacity = capacity;
    return 0;
}

static int append_latency(latencies_t *latencies, uint64_t value)
{
    if (reserve_latencies(latencies, 1) != 0) {
        return -1;
    }
    latencies->values[latencies->count++] = value;
    return 0;
}

/* The checks before the run: the key is imported, a wrong signature is refused and the right
 * one accepted, so that every counted call is a real verification. */
static int prepare_client(const char *who, const options_t *options, const workload_t *workload,
                          psa_key_id_t *key)
{
    psa_key_attributes_t attributes = PSA_KEY_ATTRIBUTES_INIT;
    uint8_t wrong[PSA_SIGNATURE_MAX_SIZE];
    psa_status_t status = psa_register_se_driver(PARSEC_SE_DRIVER_LOCATION, &PARSEC_SE_DRIVER);
    if (status != PSA_SUCCESS) {
        return psa_failed(who, "psa_register_se_driver", status);
    }
    status = psa_crypto_init();
    if (status != PSA_SUCCESS) {
        return psa_failed(who, "psa_crypto_init", status);
    }
    psa_set_key_lifetime(&attributes,
                         PSA_KEY_LIFETIME_FROM_PERSISTENCE_AND_LOCATION(
                             PSA_KEY_PERSISTENCE_VOLATILE, PARSEC_SE_DRIVER_LOCATION));
    psa_set_key_type(&attributes, options->kind->public_type);
    psa_set_key_bits(&attributes, options->kind->bits);
    psa_set_key_usage_flags(&attributes, PSA_KEY_USAGE_VERIFY_HASH);
    psa_set_key_algorithm(&attributes, options->kind->alg);
    status = psa_import_key(&attributes, workload->public_key, workload->public_key_length, key);
    if (status != PSA_SUCCESS) {
        return psa_failed(who, "psa_import_key in the secure element", status);
    }
    memcpy(wrong, workload->signature, workload->signature_length);
    wrong[workload->signature_length / 2] ^= 0x01;
    status = psa_verify_hash(*key, options->kind->alg, workload->hash, workload->hash_length,
                             wrong, workload->signature_length);
    if (status != PSA_ERROR_INVALID_SIGNATURE) {
        return psa_failed(who, "psa_verify_hash of a wrong signature (expected -149)", status);
    }
    status = psa_verify_hash(*key, options->kind->alg, workload->hash, workload->hash_length,
                             workload->signature, workload->signature_length);
    if (status != PSA_SUCCESS) {
        return psa_failed(who, "psa_verify_hash", status);
    }
    return 0;
}

/* One client process. It writes READY_BYTE to `result_fd` when its key is in place, waits for
 * GO_BYTE on `go_fd` (the end of that stream: the run is called off), runs, and writes its
 * run_header_t and latencies. Returns the process's exit status. */
static int run_client(unsigned int index, const options_t *options, const workload_t *workload,
                      int result_fd, int go_fd)
{
    char who[32];
    char directory[32];
    psa_key_id_t key = PSA_KEY_ID_NULL;
    latencies_t latencies = {NULL, 0, 0};
    run_header_t header = {0, 0, 0};
    uint64_t started = 0;
    uint64_t cpu_started = 0;
    uint64_t deadline;
    psa_status_t status = PSA_SUCCESS;
    int result = 0;
    int go = 0;
    char byte;
    unsigned int i;

    snprintf(who, sizeof(who), "process %u", index);
    snprintf(directory, sizeof(directory), "p%u", index);
    if (mkdir(directory, 0700) != 0 || chdir(directory) != 0) {
        fprintf(stderr, PROGRAM ": %s: cannot make its directory: %s\n", who, strerror(errno));
        return 1;
    }
    result = prepare_client(who, options, workload, &key);
    if (result == 0) {
        byte = READY_BYTE;
        if (write_all(result_fd, &byte, 1) == 0 && read_all(go_fd, &byte, 1) == 0) {
            go = byte == GO_BYTE;
        }
    }
    if (go) {
        for (i = 0; i < WARM_UP_CALLS && status == PSA_SUCCESS; i++) {
            status = psa_verify_hash(key, options->kind->alg, workload->hash,
                                     workload->hash_length, workload->signature,
                                     workload->signature_length);
        }
        cpu_started = cpu_ns();
        started = now_ns();
        deadline = started + (uint64_t) (options->seconds * 1e9);
        while (status == PSA_SUCCESS) {
            uint64_t before = now_ns();
            if (before >= deadline) {
                break;
            }
            status = psa_verify_hash(key, options->kind->alg, workload->hash,
                                     workload->hash_length, workload->signature,
                                     workload->signature_length);
            if (status == PSA_SUCCESS && append_latency(&latencies, now_ns() - before) != 0) {
                status = PSA_ERROR_INSUFFICIENT_MEMORY;
            }
        }
        header.elapsed_ns = now_ns() - started;
        header.cpu_ns = cpu_ns() - cpu_started;
        header.count = latencies.count;
        if (status != PSA_SUCCESS) {
            fprintf(stderr, PROGRAM ": %s: psa_verify_hash failed after %zu calls: PSA status %d\n",
                    who, latencies.count, (int) status);
            result = 1;
        }
    }
    if (key != PSA_KEY_ID_NULL) {
        status = psa_destroy_key(key);
        if (status != PSA_SUCCESS && result == 0) {
            result = psa_failed(who, "psa_destroy_key", status);
        }
    }
    mbedtls_psa_crypto_free();
    if (go && result == 0 &&
        (write_all(result_fd, &header, sizeof(header)) != 0 ||
         write_all(result_fd, latencies.values, latencies.count * sizeof(uint64_t)) != 0)) {
        fprintf(stderr, PROGRAM ": %s: cannot send its results: %s\n", who, strerror(errno));
        result = 1;
    }
    free(latencies.values);
    return result;
}

/* Removes `path` and everything under it (the run's working directories). */
static void remove_tree(const char *path)
{
    DIR *directory = opendir(path);
    struct dirent *entry;
    char child[PATH_MAX];
    if (directory != NULL) {
        while ((entry = readdir(directory)) != NULL) {
            struct stat info;
            if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) {
                continue;
            }
            snprintf(child, sizeof(child), "%s/%s", path, entry->d_name);
            if (lstat(child, &info) == 0 && S_ISDIR(info.st_mode)) {
                remove_tree(child);
            } else {
                unlink(child);
            }
        }
        closedir(directory);
    }
    rmdir(path);
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a;
    uint64_t y = *(const uint64_t *) b;
    return (x > y) - (x < y);
}

typedef struct {
    pid_t pid;
    int result_fd;
    uint64_t count;
    double rate;
    double cpu_s;
} client_t;

/* Starts the clients one at a time (the PSA core's files stay apart), each only once the one
 * before is ready. Returns 0 when all are ready; `started` counts the processes to wait for. */
static int start_clients(const options_t *options, const workload_t *workload,
                         client_t *clients, int go_fds[2], unsigned int *started)
{
    for (*started = 0; *started < options->processes;) {
        int result_fds[2];
        char byte = 0;
        client_t *client = &clients[*started];
        if (pipe(result_fds) != 0) {
            fprintf(stderr, PROGRAM ": pipe: %s\n", strerror(errno));
            return -1;
        }
        fflush(NULL);
        client->pid = fork();
        if (client->pid < 0) {
            fprintf(stderr, PROGRAM ": fork: %s\n", strerror(errno));
            close(result_fds[0]);
            close(result_fds[1]);
            return -1;
        }
        if (client->pid == 0) {
            close(go_fds[1]);
            close(result_fds[0]);
            exit(run_client(*started, options, workload, result_fds[1], go_fds[0]));
        }
        close(result_fds[1]);
        client->result_fd = result_fds[0];
        (*started)++;
        if (read_all(client->result_fd, &byte, 1) != 0 || byte != READY_BYTE) {
            return -1;  /* it said why on stderr */
        }
    }
    return 0;
}

/* Reads a client's run; its latencies are appended to `all`. */
static int collect(client_t *client, latencies_t *all)
{
    run_header_t header;
    if (read_all(client->result_fd, &header, sizeof(header)) != 0 ||
        header.count > SIZE_MAX / sizeof(uint64_t) ||
        reserve_latencies(all, (size_t) header.count) != 0 ||
        read_all(client->result_fd, all->values + all->count,
                 (size_t) header.count * sizeof(uint64_t)) != 0) {
        return -1;
    }
    all->count += (size_t) header.count;
    client->count = header.count;
    client->cpu_s = (double) header.cpu_ns / 1e9;
    client->rate = header.elapsed_ns ? (double) header.count * 1e9 / (double) header.elapsed_ns
                                     : 0.0;
    return 0;
}

static void print_report(const options_t *options, const client_t *clients,
                         latencies_t *all)
{
    double rate = 0.0;
    double cpu_s = 0.0;
    double p50 = 0.0;
    double p99 = 0.0;
    unsigned int i;
    for (i = 0; i < options->processes; i++) {
        rate += clients[i].rate;
        cpu_s += clients[i].cpu_s;
    }
    if (all->count > 0) {
        size_t p99_index = all->count * 99 / 100;
        qsort(all->values, all->count, sizeof(uint64_t), compare_u64);
        p50 = (double) all->values[all->count / 2] / 1e6;
        p99 = (double) all->values[p99_index < all->count ? p99_index : all->count - 1] / 1e6;
    }
    printf("{\"program\": \"" PROGRAM "\", \"key\": \"%s\", \"processes\": %u, "
           "\"seconds\": %.3f, \"count\": %zu, \"rate_per_s\": %.1f, \"p50_ms\": %.4f, "
           "\"p99_ms\": %.4f, \"client_cpu_s\": %.3f, \"process_counts\": [",
           options->kind->name, options->processes, options->seconds, all->count, rate, p50,
           p99, cpu_s);
    for (i = 0; i < options->processes; i++) {
        printf("%s%llu", i ? ", " : "", (unsigned long long) clients[i].count);
    }
    printf("]}\n");
}

int main(int argc, char **argv)
{
    options_t options;
    workload_t workload;
    client_t clients[MAX_PROCESSES];
    latencies_t all = {NULL, 0, 0};
    const char *tmpdir = getenv("TMPDIR");
    char directory[PATH_MAX];
    int go_fds[2];
    unsigned int started = 0;
    int ready;
    unsigned int i;
    int failed = 0;
    int result = parse_options(argc, argv, &options);
    if (result != 0) {
        return result;
    }
    if (make_workload(options.kind, &workload) != 0) {
        return 1;
    }
    snprintf(directory, sizeof(directory), "%s/" PROGRAM ".XXXXXX",
             tmpdir != NULL && tmpdir[0] == '/' ? tmpdir : "/tmp");
    if (mkdtemp(directory) == NULL || chdir(directory) != 0) {
        fprintf(stderr, PROGRAM ": cannot make a working directory: %s\n", strerror(errno));
        return 1;
    }
    if (pipe(go_fds) != 0) {
        fprintf(stderr, PROGRAM ": pipe: %s\n", strerror(errno));
        remove_tree(directory);
        return 1;
    }
    memset(clients, 0, sizeof(clients));
    ready = start_clients(&options, &workload, clients, go_fds, &started) == 0;
    if (ready) {
        for (i = 0; i < options.processes; i++) {
            char go = GO_BYTE;
            if (write_all(go_fds[1], &go, 1) != 0) {
                break;
            }
        }
    }
    close(go_fds[1]);  /* without GO_BYTE first: the run is called off */
    for (i = 0; i < started; i++) {
        int status = 0;
        if (ready && collect(&clients[i], &all) != 0) {
            failed = 1;
        }
        close(clients[i].result_fd);
        if (waitpid(clients[i].pid, &status, 0) < 0) {
            failed = 1;
        } else if (WIFSIGNALED(status)) {
            fprintf(stderr, PROGRAM ": process %u ended by signal %d\n", i, WTERMSIG(status));
            failed = 1;
        } else if (WEXITSTATUS(status) != 0) {
            failed = 1;  /* it said why */
        }
    }
    close(go_fds[0]);
    if (chdir("/") != 0) {
        failed = 1;
    }
    remove_tree(directory);
    if (!ready || failed) {
        free(all.values);
        return 1;
    }
    print_report(&options, clients, &all);
    free(all.values);
    return 0;
}
