// The one translation unit that compiles Asio (BOOST_ASIO_SEPARATE_COMPILATION),
// so the other files only parse its headers: much faster builds on 2 cores.
//
// It also mends two things in how Asio 1.81 uses liburing 2.3, through
// link-time wraps (core/CMakeLists.txt) of the two liburing calls below.

// Makes io_uring_get_sqe an external call in this file only (liburing.h
// otherwise inlines it), so the link can route Asio's calls through
// __wrap_io_uring_get_sqe. The header changes nothing else under it.
#define LIBURING_INTERNAL
#include <liburing.h>

#include <boost/asio/impl/src.hpp>

#include <algorithm>

namespace patina::core {
// Entries of the io_context's ring; see __wrap_io_uring_queue_init.
constexpr unsigned asio_ring_entries_max = 1024;
}  // namespace patina::core

extern "C" io_uring_sqe* __real_io_uring_get_sqe(io_uring* ring);
extern "C" int __real_io_uring_queue_init(unsigned entries, io_uring* ring, unsigned flags);

// Asio prepares cancels and timeout removals without setting user_data, and
// liburing 2.3's io_uring_prep_* leave that field alone, so such an entry
// carries the user_data of whatever last used its ring slot. Its completion
// then reads as the completion of that earlier operation's queue: a pending
// receive or wait is completed by mistake, and its real completion is lost
// (a connection hangs). In a ring of N entries this can start after N
// submissions: at Asio's 16,384 later in an agent's life (its reactor uses
// run(), so only cancels take this path), at once with a small ring. An
// entry handed out with user_data 0 completes as Asio's "nothing to do".
extern "C" io_uring_sqe* __wrap_io_uring_get_sqe(io_uring* ring) {
  io_uring_sqe* sqe = __real_io_uring_get_sqe(ring);
  if (sqe != nullptr) sqe->user_data = 0;
  return sqe;
}

// Asio asks for a fixed 16,384-entry ring: 1 MiB of submission entries and a
// 512 KiB completion queue, pinned kernel memory mapped into every process,
// which was a third of an idle agent's private memory. Here it gets 1,024.
// Asio submits and takes the next entry when the submission queue is full
// (io_uring_service::get_sqe), and completions beyond the completion queue
// wait in the kernel's overflow list, which needs IORING_FEAT_NODROP (Linux
// 5.5); without it the ring is set up again at the size Asio asked for.
extern "C" int __wrap_io_uring_queue_init(unsigned entries, io_uring* ring, unsigned flags) {
  const unsigned clamped = std::min(entries, patina::core::asio_ring_entries_max);
  int rc = __real_io_uring_queue_init(clamped, ring, flags);
  if (rc < 0 || clamped == entries || (ring->features & IORING_FEAT_NODROP) != 0) return rc;
  io_uring_queue_exit(ring);
  return __real_io_uring_queue_init(entries, ring, flags);
}
