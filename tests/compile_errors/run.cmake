# Compiles a program that must not compile, and checks that the compiler says why in crier's
# words (and not only in pages of template errors).
#   cmake -DCXX=compiler -DINCLUDE=dir -DSOURCE=file.cpp -DEXPECT=text -DMAX_ERRORS=n -P run.cmake
execute_process(COMMAND ${CXX} -std=c++20 -fsyntax-only -I${INCLUDE} ${SOURCE}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but must not")
endif()
string(FIND "${out}" "${EXPECT}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "${SOURCE}: the compiler did not say \"${EXPECT}\":\n${out}")
endif()
string(REGEX MATCHALL "error:" errors "${out}")
list(LENGTH errors count)
if(count GREATER MAX_ERRORS)
  message(FATAL_ERROR "${SOURCE}: ${count} errors, want at most ${MAX_ERRORS}:\n${out}")
endif()
message(STATUS "${SOURCE}: ${count} error(s), saying \"${EXPECT}\"")
