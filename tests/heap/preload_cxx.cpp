// A C++ program for the preload test: containers, strings, threads,
// exceptions, aligned new. Its output must not depend on the allocator.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

struct alignas(64) Wide {
    long v[8];
};

int main() {
    std::map<std::string, int> words;
    std::mutex lock;
    std::vector<std::thread> pool;
    for (int t = 0; t < 4; t++)
        pool.emplace_back([&, t] {
            std::unordered_map<int, std::string> local;
            for (int i = 0; i < 20000; i++) local[i] = std::to_string(i * (t + 1));
            std::lock_guard<std::mutex> g(lock);
            for (auto &kv : local) words[kv.second.substr(0, 3)] += 1;
        });
    for (auto &th : pool) th.join();
    std::vector<std::unique_ptr<Wide>> wide;
    for (int i = 0; i < 1000; i++) {
        wide.emplace_back(new Wide());
        if (reinterpret_cast<uintptr_t>(wide.back().get()) % 64 != 0) return 1;
    }
    int caught = 0;
    for (int i = 0; i < 100; i++) try {
            throw std::runtime_error(std::string(100, 'x'));
        } catch (const std::exception &e) {
            caught += e.what()[0] == 'x';
        }
    std::vector<std::string> keys;
    for (auto &kv : words) keys.push_back(kv.first + "=" + std::to_string(kv.second));
    std::sort(keys.begin(), keys.end());
    std::printf("%zu keys, first %s, last %s, caught %d\n", keys.size(), keys.front().c_str(),
                keys.back().c_str(), caught);
    return 0;
}
