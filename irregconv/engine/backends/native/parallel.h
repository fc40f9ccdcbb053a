// Parallel parts on torch's OpenMP pool (its libgomp entry points, handed over by irc_use_openmp), else on
// std::threads: shared by every kernel source of the extension.
//
// A part never allocates or throws (an exception in a pool thread would end the process): kernels allocate their
// per-part scratch before they start the parts.
#pragma once

#include <cstdint>
#include <thread>
#include <vector>

namespace irc {

// torch's OpenMP entry points (libgomp ABI), when the caller found them
typedef void (*ParallelFn)(void (*)(void*), void*, unsigned, unsigned);
typedef int (*IntFn)();
inline ParallelFn gomp_parallel = nullptr;
inline IntFn omp_thread_num = nullptr;
inline IntFn omp_num_threads = nullptr;

template <typename F>
struct Parts {
    const F* part;
    int64_t count;
};

template <typename F>
void parts_worker(void* data) {
    const Parts<F>& parts = *static_cast<const Parts<F>*>(data);
    // a team smaller than asked for (nested parallelism) still covers every part
    for (int64_t t = omp_thread_num(); t < parts.count; t += omp_num_threads()) (*parts.part)(t);
}

// part(t) for every t < count, in parallel.
template <typename F>
void parallel_parts(int64_t count, const F& part) {
    if (count <= 1) {
        if (count == 1) part(0);
        return;
    }
    if (gomp_parallel != nullptr) {
        Parts<F> parts{&part, count};
        gomp_parallel(parts_worker<F>, &parts, static_cast<unsigned>(count), 0);
        return;
    }
    std::vector<std::thread> pool;
    for (int64_t t = 1; t < count; ++t) pool.emplace_back([&part, t] { part(t); });
    part(0);
    for (auto& thread : pool) thread.join();
}

// The number of parts for n iterations on `threads` threads: at least one, at most n.
inline int64_t parts_for(int64_t n, int64_t threads) {
    return n < 1 ? 1 : (threads < 1 ? 1 : (threads < n ? threads : n));
}

// range(lo, hi) over [0, n) split into parts_for(n, threads) contiguous ranges, in parallel.
template <typename F>
void parallel_ranges(int64_t n, int64_t threads, const F& range) {
    const int64_t count = parts_for(n, threads);
    parallel_parts(count, [&](int64_t t) { range(n * t / count, n * (t + 1) / count); });
}

}  // namespace irc
