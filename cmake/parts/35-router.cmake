# 35-router.cmake - the routing worker (src/worker/router/): a model's
# backends behind strategies, breakers, retry budgets and limiters.
target_sources(sluice_obj PRIVATE
  ${CMAKE_SOURCE_DIR}/src/worker/router/router.c)

sl_add_test(test_router SOURCES tests/unit/test_router.c TIMEOUT 120)

# Fault tests against real processes (server + two mock upstreams).
add_test(NAME it_resilience
  COMMAND bash ${CMAKE_SOURCE_DIR}/tests/integration/resilience.sh $<TARGET_FILE:sluice>)
set_tests_properties(it_resilience PROPERTIES TIMEOUT 300)
