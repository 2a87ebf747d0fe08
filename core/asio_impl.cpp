// The one translation unit that compiles Asio (BOOST_ASIO_SEPARATE_COMPILATION),
// so the other files only parse its headers: much faster builds on 2 cores.
#include <boost/asio/impl/src.hpp>

#include <liburing.h>

#include <algorithm>

namespace patina::core {
// Entries of the io_context's ring; see __wrap_io_uring_queue_init.
constexpr unsigned asio_ring_entries_max = 1024;
}  // namespace patina::core

// Asio 1.81's io_uring backend asks for a fixed 16,384-entry ring: 1 MiB of
// submission entries and a 512 KiB completion queue, pinned kernel memory
// mapped into every process, which was a third of an idle agent's private
// memory. Patina links with --wrap=io_uring_queue_init (core/CMakeLists.txt)
// so that request gets 1,024 entries. A smaller ring changes no behaviour:
// when the submission queue is full Asio submits and takes the next entry
// (io_uring_service::get_sqe), and completions beyond the completion queue
// wait in the kernel's overflow list, which needs IORING_FEAT_NODROP (Linux
// 5.5); without it the ring is set up again at the size Asio asked for.
extern "C" int __real_io_uring_queue_init(unsigned entries, io_uring* ring, unsigned flags);

extern "C" int __wrap_io_uring_queue_init(unsigned entries, io_uring* ring, unsigned flags) {
  const unsigned clamped = std::min(entries, patina::core::asio_ring_entries_max);
  int rc = __real_io_uring_queue_init(clamped, ring, flags);
  if (rc < 0 || clamped == entries || (ring->features & IORING_FEAT_NODROP) != 0) return rc;
  io_uring_queue_exit(ring);
  return __real_io_uring_queue_init(entries, ring, flags);
}
