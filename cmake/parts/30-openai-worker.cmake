# 30-openai-worker.cmake - the OpenAI-compatible upstream worker
# (src/worker/openai/openai.c: libcurl multi driven by the shard loops) and
# its unit test (an in-process libevent evhttp mock upstream).
target_sources(sluice_obj PRIVATE ${CMAKE_SOURCE_DIR}/src/worker/openai/openai.c)

sl_add_test(test_openai_worker SOURCES tests/unit/test_openai_worker.c TIMEOUT 120)
