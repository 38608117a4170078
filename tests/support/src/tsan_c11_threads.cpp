// ThreadSanitizer shim for librdkafka: C11 threads routed through pthreads.
//
// Debian's librdkafka creates its threads and locks with glibc's C11 API (thrd_create, mtx_lock,
// cnd_wait). glibc implements those by calling its pthread internals directly, bypassing the
// interceptors ThreadSanitizer relies on: TSan never learns about librdkafka's threads, and the
// first instrumented code they run (a delivery callback, the mock cluster's allocations) crashes
// with SEGV. Defining the same functions in the executable interposes them (an executable's
// symbols win over libc's), and these versions call the intercepted pthread functions, so TSan
// sees every librdkafka thread and lock.
//
// Compiled only into TSan builds (FERRY_SANITIZE=thread): see tests/support/CMakeLists.txt and
// tools/ferry-dev-kafka/CMakeLists.txt. Exactly the functions librdkafka 2.0.2 imports (nm -D)
// are provided; mtx_t and cnd_t share pthread_mutex_t's and pthread_cond_t's layout in glibc.
#include <pthread.h>
#include <threads.h>

#include <cerrno>
#include <cstdint>
#include <ctime>

static_assert(sizeof(mtx_t) >= sizeof(pthread_mutex_t));
static_assert(sizeof(cnd_t) >= sizeof(pthread_cond_t));
static_assert(sizeof(thrd_t) == sizeof(pthread_t));

// Named, so that a unity build (presets asan and tsan) never merges these helpers with a test
// file's own anonymous-namespace names.
namespace ferry_tsan_shim {
namespace {

struct thread_start {
    thrd_start_t fn;
    void* arg;
};

void* run_thread(void* p) {
    const thread_start start = *static_cast<thread_start*>(p);
    delete static_cast<thread_start*>(p);
    return reinterpret_cast<void*>(static_cast<intptr_t>(start.fn(start.arg)));
}

pthread_mutex_t* as_pthread(mtx_t* m) { return reinterpret_cast<pthread_mutex_t*>(m); }
pthread_cond_t* as_pthread(cnd_t* c) { return reinterpret_cast<pthread_cond_t*>(c); }
int result(int pthread_rc) { return pthread_rc == 0 ? thrd_success : thrd_error; }

}  // namespace
}  // namespace ferry_tsan_shim

extern "C" {

int thrd_create(thrd_t* thr, thrd_start_t fn, void* arg) {
    auto* start = new ferry_tsan_shim::thread_start{fn, arg};
    const int rc = pthread_create(thr, nullptr, ferry_tsan_shim::run_thread, start);
    if (rc != 0) {
        delete start;
        return rc == EAGAIN || rc == ENOMEM ? thrd_nomem : thrd_error;
    }
    return thrd_success;
}

int thrd_join(thrd_t thr, int* res) {
    void* value = nullptr;
    if (pthread_join(thr, &value) != 0) {
        return thrd_error;
    }
    if (res != nullptr) {
        *res = static_cast<int>(reinterpret_cast<intptr_t>(value));
    }
    return thrd_success;
}

int mtx_init(mtx_t* m, int type) {
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    if ((type & mtx_recursive) != 0) {
        pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    }
    const int rc = pthread_mutex_init(ferry_tsan_shim::as_pthread(m), &attr);
    pthread_mutexattr_destroy(&attr);
    return ferry_tsan_shim::result(rc);
}

int mtx_lock(mtx_t* m) {
    return ferry_tsan_shim::result(pthread_mutex_lock(ferry_tsan_shim::as_pthread(m)));
}
int mtx_unlock(mtx_t* m) {
    return ferry_tsan_shim::result(pthread_mutex_unlock(ferry_tsan_shim::as_pthread(m)));
}
void mtx_destroy(mtx_t* m) { pthread_mutex_destroy(ferry_tsan_shim::as_pthread(m)); }

int cnd_init(cnd_t* c) {
    return ferry_tsan_shim::result(pthread_cond_init(ferry_tsan_shim::as_pthread(c), nullptr));
}
int cnd_signal(cnd_t* c) {
    return ferry_tsan_shim::result(pthread_cond_signal(ferry_tsan_shim::as_pthread(c)));
}
int cnd_broadcast(cnd_t* c) {
    return ferry_tsan_shim::result(pthread_cond_broadcast(ferry_tsan_shim::as_pthread(c)));
}
int cnd_wait(cnd_t* c, mtx_t* m) {
    return ferry_tsan_shim::result(
        pthread_cond_wait(ferry_tsan_shim::as_pthread(c), ferry_tsan_shim::as_pthread(m)));
}
void cnd_destroy(cnd_t* c) { pthread_cond_destroy(ferry_tsan_shim::as_pthread(c)); }

int cnd_timedwait(cnd_t* c, mtx_t* m, const struct timespec* deadline) {
    const int rc = pthread_cond_timedwait(ferry_tsan_shim::as_pthread(c),
                                          ferry_tsan_shim::as_pthread(m), deadline);
    if (rc == ETIMEDOUT) {
        return thrd_timedout;
    }
    return ferry_tsan_shim::result(rc);
}

}  // extern "C"
