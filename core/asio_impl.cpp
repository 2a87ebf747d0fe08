// The one translation unit that compiles Asio (BOOST_ASIO_SEPARATE_COMPILATION),
// so the other files only parse its headers: much faster builds on 2 cores.
#include <boost/asio/impl/src.hpp>
