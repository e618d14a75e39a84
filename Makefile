# memkit: the two commands are `make run` and `make check`.
# Everything is built with CMake; this file only names the builds.

SHELL   := /bin/bash
JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE   ?= cmake
SEED    ?= 12345
FUZZ_SECONDS ?= 60

.PHONY: all deps build run run-pools check check-release check-debug check-asan check-tsan fuzz \
        check-windows \
        bench bench-deps bench-policies bench-shm bench-shm-threads bench-ipc bench-malloc format \
        format-check clean

all: build

deps:
	@scripts/install-deps

# Release build: libraries in build/lib, programs in build/bin.
build: deps
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=Release
	$(CMAKE) --build build -j $(JOBS)

# The main job's demo.
run: build
	./build/bin/shm-demo

# the block engine's six fit policies side by side (the first demo)
run-pools: build
	./build/bin/pool-demo

# configure+build+test one variant: $(call variant,DIR,CMAKE-ARGS)
define variant
	$(CMAKE) -S . -B $(1) $(2)
	$(CMAKE) --build $(1) -j $(JOBS)
	cd $(1) && set -o pipefail && ctest --output-on-failure -j $(JOBS) --timeout 900 2>&1 | tee ctest.log
endef

check: deps
	$(MAKE) check-release check-debug check-asan check-tsan fuzz
	@scripts/check-summary build build-debug build-asan build-tsan

check-release:
	$(call variant,build,-DCMAKE_BUILD_TYPE=Release)
check-debug:
	$(call variant,build-debug,-DCMAKE_BUILD_TYPE=Debug)
check-asan:
	$(call variant,build-asan,-DCMAKE_BUILD_TYPE=RelWithDebInfo -DMK_SANITIZE=address -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++)
check-tsan:
	$(call variant,build-tsan,-DCMAKE_BUILD_TYPE=RelWithDebInfo -DMK_SANITIZE=thread -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++)

# The Win32 platform layer: cross-built with mingw-w64, a smoke test run
# under Wine (not part of check: it installs mingw-w64 and Wine).
check-windows:
	scripts/check-windows

# libFuzzer targets, each run for a bounded time on its seed corpus.
fuzz:
	$(CMAKE) -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMK_BUILD_FUZZ=ON \
	    -DMK_BUILD_TESTS=OFF -DMK_BUILD_BENCH=OFF -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
	$(CMAKE) --build build-fuzz -j $(JOBS)
	scripts/run-fuzzers build-fuzz $(FUZZ_SECONDS)
	@# The committed fuzz_shm regression inputs must still reach the heap.
	set -o pipefail; MK_FUZZ_SHM_REACH=1 build-fuzz/bin/fuzz_shm tests/fuzz/corpus/fuzz_shm/* 2>&1 | tail -n 3

# Every benchmark, peers in the same run (docs/BENCHMARKS.md). Long: about
# half an hour on 2 cores. One at a time: make bench-policies, bench-shm, ...
bench: bench-policies bench-shm bench-shm-threads bench-ipc bench-malloc

bench-deps:
	@scripts/install-deps --bench

bench-policies: build
	./build/bin/bench-policies --seed $(SEED)

bench-shm: build
	./build/bin/bench-shm --seed $(SEED)

bench-shm-threads: build
	./build/bin/bench-shm-threads --runs 5

bench-ipc: build
	./build/bin/bench-ipc --runs 5

bench-malloc: bench-deps build
	./build/bin/bench-malloc

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cc' '*.cpp')

format-check:
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h' '*.cc' '*.cpp')

clean:
	rm -rf build build-debug build-asan build-tsan build-fuzz
