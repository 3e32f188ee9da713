# Fails when a C++ file of the tree is not laid out as .clang-format says: run
#   clang-format -i $(git ls-files '*.cpp' '*.hpp')
# to fix it.
find_program(CLANG_FORMAT clang-format REQUIRED)
file(GLOB_RECURSE files ${SOURCE_DIR}/include/*.hpp ${SOURCE_DIR}/src/*.cpp ${SOURCE_DIR}/src/*.hpp
     ${SOURCE_DIR}/tests/*.cpp ${SOURCE_DIR}/tests/*.hpp ${SOURCE_DIR}/bench/*.cpp ${SOURCE_DIR}/bench/*.hpp
     ${SOURCE_DIR}/examples/*.cpp ${SOURCE_DIR}/examples/*.hpp ${SOURCE_DIR}/tools/*.cpp ${SOURCE_DIR}/tools/*.hpp)
list(FILTER files EXCLUDE REGEX "/tests/fuzz/corpus/")
execute_process(COMMAND ${CLANG_FORMAT} --dry-run --Werror ${files} RESULT_VARIABLE rc ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "files not formatted as .clang-format says (clang-format -i FILE fixes them):\n${out}")
endif()
list(LENGTH files n)
message(STATUS "${n} files formatted as .clang-format says")
