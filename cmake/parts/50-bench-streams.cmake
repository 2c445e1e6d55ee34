# 50-bench-streams.cmake - bench/sse_load.c, a libevent load client for
# streaming chat completions (many concurrent SSE streams held open, or a
# closed loop for time to first token); driven by scripts/bench-streams.sh,
# see docs/benchmarks.md.  It links libevent only, nothing from sluice, so it
# measures any OpenAI-compatible server (sluice, the mock, peers).
add_executable(bench_sse_load bench/sse_load.c)
target_link_libraries(bench_sse_load PRIVATE PkgConfig::LIBEVENT Threads::Threads)
set_target_properties(bench_sse_load PROPERTIES OUTPUT_NAME sse_load
  RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bench)
