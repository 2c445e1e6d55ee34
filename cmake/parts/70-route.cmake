# 70-route.cmake - the routing worker's resilience primitives (src/route/):
# circuit breaker, retry budget + backoff, adaptive concurrency limiter,
# EWMA, load-balancing strategies; their unit tests (deterministic, with
# injected time) and thread stress test; the micro-benchmark build/bench/route.
# See docs/internals/routing.md.
target_sources(sluice_obj PRIVATE
  ${CMAKE_SOURCE_DIR}/src/route/breaker.c
  ${CMAKE_SOURCE_DIR}/src/route/budget.c
  ${CMAKE_SOURCE_DIR}/src/route/limiter.c
  ${CMAKE_SOURCE_DIR}/src/route/balance.c)

sl_add_test(test_route SOURCES tests/unit/test_route.c TIMEOUT 120)
sl_add_test(test_route_stress SOURCES tests/unit/test_route_stress.c TIMEOUT 300)

add_executable(bench_route bench/route.c)
target_link_libraries(bench_route PRIVATE sluice_static)
set_target_properties(bench_route PROPERTIES OUTPUT_NAME route
  RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bench)
