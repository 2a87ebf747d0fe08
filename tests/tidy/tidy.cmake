# The tidy test (STYLE.md 2.1): keeps the sans-IO cores free of clocks,
# randomness, threads, Asio and project includes, and the tree free of FIXME.
# Run: cmake -DROOT=<repo> -P tidy.cmake ; fails listing every offence.

set(failures "")

file(GLOB_RECURSE core_files ${ROOT}/crdt/*.hpp ${ROOT}/crdt/*.cpp ${ROOT}/swim/*.hpp ${ROOT}/swim/*.cpp)
set(banned_in_cores
  "random_device" "uniform_int_distribution" "uniform_real_distribution" "_clock::now"
  "#include <thread>" "#include <random>" "#include <boost/asio" "#include \"core/" "#include \"io/"
  "#include \"api/" "#include \"tools/")
foreach(f ${core_files})
  file(READ ${f} text)
  foreach(pattern ${banned_in_cores})
    string(FIND "${text}" "${pattern}" at)
    if(NOT at EQUAL -1)
      list(APPEND failures "${f}: '${pattern}' is not allowed in a sans-IO core")
    endif()
  endforeach()
  # crdt and swim stay independent of each other too.
  if(f MATCHES "/crdt/")
    string(FIND "${text}" "#include \"swim/" at)
  else()
    string(FIND "${text}" "#include \"crdt/" at)
  endif()
  if(NOT at EQUAL -1)
    list(APPEND failures "${f}: crdt/ and swim/ must not include each other")
  endif()
endforeach()

# core/ knows no protocol: it includes nothing from the other folders.
file(GLOB_RECURSE runtime_files ${ROOT}/core/*.hpp ${ROOT}/core/*.cpp)
foreach(f ${runtime_files})
  file(READ ${f} text)
  foreach(pattern "#include \"io/" "#include \"api/" "#include \"crdt/" "#include \"swim/" "#include \"tools/")
    string(FIND "${text}" "${pattern}" at)
    if(NOT at EQUAL -1)
      list(APPEND failures "${f}: core/ must not include ${pattern}")
    endif()
  endforeach()
endforeach()

# io/ never reaches up into api/ or tools/.
file(GLOB_RECURSE io_files ${ROOT}/io/*.hpp ${ROOT}/io/*.cpp)
foreach(f ${io_files})
  file(READ ${f} text)
  foreach(pattern "#include \"api/" "#include \"tools/")
    string(FIND "${text}" "${pattern}" at)
    if(NOT at EQUAL -1)
      list(APPEND failures "${f}: io/ must not include ${pattern}")
    endif()
  endforeach()
endforeach()

file(GLOB_RECURSE all_files ${ROOT}/core/* ${ROOT}/io/* ${ROOT}/crdt/* ${ROOT}/swim/* ${ROOT}/api/* ${ROOT}/tools/*)
foreach(f ${all_files})
  if(f MATCHES "\\.(hpp|cpp)$")
    file(READ ${f} text)
    string(FIND "${text}" "FIXME" at)
    if(NOT at EQUAL -1)
      list(APPEND failures "${f}: FIXME left in the code")
    endif()
  endif()
endforeach()

if(failures)
  list(JOIN failures "\n" msg)
  message(FATAL_ERROR "tidy found problems:\n${msg}")
endif()
message(STATUS "tidy: clean")
