# 20-mock.cmake - `sluice mock-upstream`, the OpenAI-compatible mock model
# server (src/mock/: server, hand-written HTTP/1.1 framing), and its
# integration test (curl against the real program on 127.0.0.1).
# It uses only libevent, jansson, pthreads and sluice.h's status enum.
target_sources(sluice_obj PRIVATE
  ${CMAKE_SOURCE_DIR}/src/mock/mock_upstream.c
  ${CMAKE_SOURCE_DIR}/src/mock/mock_http.c)

add_test(NAME it_mock_upstream
  COMMAND bash ${CMAKE_SOURCE_DIR}/tests/integration/mock_upstream.sh $<TARGET_FILE:sluice>)
set_tests_properties(it_mock_upstream PROPERTIES TIMEOUT 300)
