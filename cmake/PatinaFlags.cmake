# Warning and sanitizer flags shared by every Patina target.
add_library(patina_flags INTERFACE)
target_compile_options(patina_flags INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wimplicit-fallthrough
  $<$<COMPILE_LANGUAGE:CXX>:-Wold-style-cast>)
target_include_directories(patina_flags INTERFACE ${PROJECT_SOURCE_DIR})
if(PATINA_WERROR)
  target_compile_options(patina_flags INTERFACE -Werror)
endif()

set(_patina_san "")
if(PATINA_ASAN)
  list(APPEND _patina_san address)
endif()
if(PATINA_UBSAN)
  list(APPEND _patina_san undefined)
endif()
if(_patina_san)
  list(JOIN _patina_san "," _san)
  add_compile_options(-fsanitize=${_san} -fno-omit-frame-pointer -fno-sanitize-recover=undefined -g)
  add_link_options(-fsanitize=${_san})
endif()

# Every target that includes Asio must see the same configuration, or the
# one-definition rule breaks between translation units.
function(patina_use_asio target)
  target_compile_definitions(${target} PUBLIC
    BOOST_ASIO_HAS_IO_URING
    BOOST_ASIO_DISABLE_EPOLL
    BOOST_ASIO_SEPARATE_COMPILATION
    BOOST_ASIO_NO_DEPRECATED
    BOOST_BEAST_SEPARATE_COMPILATION
    BOOST_JSON_NO_LIB
    BOOST_CONTAINER_NO_LIB)
  target_link_libraries(${target} PUBLIC Boost::headers PkgConfig::URING Threads::Threads)
endfunction()
