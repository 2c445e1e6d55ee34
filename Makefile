# Thin wrapper over CMake.  `make` builds everything into build/.
#   make run     set-up, build, start the main job on its embedded default
#   make test    unit + integration tests, then again under ASan+UBSan and TSan
#   make bench   build and run the pipeline benchmark (JSON lines)
#   make install PREFIX=/usr/local
BUILD ?= build
PREFIX ?= /usr/local
JOBS ?= $(shell nproc)
CMAKE ?= cmake

.PHONY: all setup build run demo test test-fast test-asan test-tsan e2e-deps bench bench-gateway bench-latency fuzz install clean

all: build

setup:
	@scripts/setup.sh build

$(BUILD)/Makefile:
	@scripts/setup.sh build
	$(CMAKE) -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX)

build: $(BUILD)/Makefile
	$(CMAKE) --build $(BUILD) -j$(JOBS)

run: build
	./$(BUILD)/sluice serve

demo: build
	./$(BUILD)/sluice demo

# The suite, then the same suite under sanitizers in separate build dirs.
test:
	@scripts/setup.sh test
	$(MAKE) e2e-deps
	$(MAKE) test-fast
	$(MAKE) test-asan
	$(MAKE) test-tsan

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j2

test-asan:
	$(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSLUICE_SANITIZE=address -DCMAKE_C_COMPILER=clang
	$(CMAKE) --build build-asan -j$(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  SLUICE_SANITIZED=1 ctest --output-on-failure -j2

test-tsan:
	$(CMAKE) -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DSLUICE_SANITIZE=thread -DCMAKE_C_COMPILER=clang
	$(CMAKE) --build build-tsan -j$(JOBS)
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 SLUICE_SANITIZED=1 ctest --output-on-failure -j2

bench: build
	./$(BUILD)/bench/pipeline

# sluice beside nginx, Portkey and nullplatform in ../shared/bench's harness.
bench-gateway: build
	scripts/bench-gateway.sh $(BENCH_ARGS)

# Latency added at a steady request rate (open loop, 1k/5k/10k req/s): the
# upstream directly, the nginx proxy peer and sluice (docs/benchmarks.md).
bench-latency: build
	scripts/bench-latency.sh $(BENCH_ARGS)

# The end-to-end tests' client (the official openai package, pinned).
e2e-deps:
	cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error

fuzz:
	$(CMAKE) -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DSLUICE_FUZZ=ON -DCMAKE_C_COMPILER=clang
	$(CMAKE) --build build-fuzz -j$(JOBS)
	@for f in build-fuzz/fuzz/fuzz_*; do \
	  [ -x "$$f" ] || continue; n=$$(basename $$f); \
	  echo "== $$n ($${FUZZ_SECONDS:-20}s)"; \
	  mkdir -p fuzz/out/$$n; \
	  $$f -max_total_time=$${FUZZ_SECONDS:-20} -rss_limit_mb=2048 fuzz/out/$$n fuzz/corpus/$${n#fuzz_} || exit 1; \
	done

install: build
	$(CMAKE) --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz
