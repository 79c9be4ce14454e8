// Design note — the sunrise caching device allocator.
//
// Why cache: srFree waits for the whole device to go idle (as cudaFree does),
// so freeing device memory per tensor would serialise every op with the host.
// Instead, freed blocks stay reserved and are handed out again.
//
// Size classes (all sizes in bytes):
//   - requests are rounded up to kMinBlockSize (512 B);
//   - requests <= kSmallSize (1 MiB) come from the small pool, carved out of
//     kSmallBuffer (2 MiB) segments;
//   - larger requests come from the large pool: segments of kLargeBuffer
//     (20 MiB) for requests under kMinLargeAlloc (10 MiB), otherwise the
//     request rounded up to kRoundLarge (2 MiB).
// A free block bigger than a request is split; the remainder stays in the pool
// if it is at least kMinBlockSize (small pool) or above kSmallSize (large
// pool). Adjacent free blocks of one segment are merged on free.
//
// Streams: a block belongs to the stream it was allocated on, and is reused
// only for allocations on that same stream: stream order then guarantees that
// the previous user's work has run before the next user's. A block that was
// also used on other streams (Tensor.record_stream) is not returned to the pool
// on free; instead an event is recorded on each of those streams, and the block
// comes back once all those events have completed (checked on each malloc).
//
// Out of memory: (1) look for a cached block; (2) reserve a new segment from the
// runtime; (3) on failure, wait for pending cross-stream frees, release every
// unused cached segment, and retry; (4) raise torch.OutOfMemoryError with the
// numbers a user needs. The allocator state is untouched by a failure, so the
// process stays usable.
//
// Graph capture: allocations made on a capturing stream come from the private
// pool of the graph (or of the pool handle the capture was given): blocks of a
// private pool are only ever handed out again to captures into that pool,
// since a graph's replays still use them. A block freed during capture goes
// back to its own pool, where the same capture may take it again (replay
// repeats the capture's stream order). While any capture is underway nothing
// is released to the runtime and no event is recorded for a cross-stream free
// (it would be recorded into the capture): such frees wait until no capture is
// underway. Under SUNRISE_MEMCHECK=1 a private pool keeps what is freed
// into it (nothing is reused there, nothing is released while the graph
// lives). When the last graph using a private pool is reset, its segments
// join the ordinary pools (under memcheck: go back to the runtime); blocks still allocated (a graph's outputs the user
// holds) come back to the ordinary pools when freed.
//
// Memory history (_record_memory_history): while on, each device keeps the
// last max_entries allocator events (CUDA's TraceEntry actions) and blocks keep
// the stack that allocated them. Stacks are gathered before taking the lock:
// gathering Python frames takes the GIL, and a thread holding the GIL may be
// waiting for this lock.
//
// Locking: one mutex per device guards all of that device's blocks and stats.
// Nothing that waits for device work runs under it: device tasks drop tensors,
// which frees into this allocator, so such a wait could deadlock. Releasing
// memory (empty_cache, the OOM retry) therefore waits and calls srFree with the
// lock released, after unlinking the segments it frees.
#include <torch_sunrise/SunriseCachingAllocator.h>
#include <torch_sunrise/SunriseGuard.h>
#include <torch_sunrise/SunriseException.h>
#include <torch_sunrise/SunriseFunctions.h>
#include <torch_sunrise/SunriseLaunch.h>

#include <c10/core/Allocator.h>
#include <c10/util/flat_hash_map.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <iomanip>
#include <iterator>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>

namespace torch_sunrise::caching_allocator {
namespace {

using c10::GatheredContext;
using c10::CachingAllocator::Stat;
using c10::CachingAllocator::StatArray;
using c10::CachingAllocator::StatType;

constexpr size_t kMinBlockSize = 512;
constexpr size_t kSmallSize = size_t{1} << 20;
constexpr size_t kSmallBuffer = size_t{2} << 20;
constexpr size_t kMinLargeAlloc = size_t{10} << 20;
constexpr size_t kLargeBuffer = size_t{20} << 20;
constexpr size_t kRoundLarge = size_t{2} << 20;

struct BlockPool;
struct PrivatePool;

struct Block {
  c10::DeviceIndex device = 0;
  srStream_t stream = nullptr;
  size_t size = 0;
  size_t requested_size = 0;
  char* ptr = nullptr;
  BlockPool* pool = nullptr;
  bool allocated = false;
  Block* prev = nullptr;  // neighbours within the same segment
  Block* next = nullptr;
  std::vector<srStream_t> stream_uses;  // other streams that used it (record_stream)
  int pending_events = 0;
  std::shared_ptr<GatheredContext> context;  // memory history: the stack that allocated it

  bool is_split() const { return prev != nullptr || next != nullptr; }
};

struct BlockOrder {
  bool operator()(const Block* a, const Block* b) const {
    if (a->stream != b->stream) return reinterpret_cast<uintptr_t>(a->stream) < reinterpret_cast<uintptr_t>(b->stream);
    if (a->size != b->size) return a->size < b->size;
    return reinterpret_cast<uintptr_t>(a->ptr) < reinterpret_cast<uintptr_t>(b->ptr);
  }
};

struct BlockPool {
  explicit BlockPool(bool small, PrivatePool* owner_pool = nullptr) : is_small(small), owner(owner_pool) {}
  std::set<Block*, BlockOrder> blocks;
  const bool is_small;
  PrivatePool* const owner;  // null for the ordinary pools
};

// The memory of graphs captured into one pool id. Its BlockPools are pointed
// to by its blocks, so it lives at a fixed address (held by unique_ptr).
struct PrivatePool {
  explicit PrivatePool(c10::MempoolId_t pool_id) : id(pool_id), small(true, this), large(false, this) {}
  const c10::MempoolId_t id;
  int use_count = 1;  // graphs (and captures) using it
  BlockPool small;
  BlockPool large;
};

std::string format_size(uint64_t size) {
  std::ostringstream os;
  os.precision(2);
  os << std::fixed;
  if (size <= 1024) os << size << " bytes";
  else if (size <= 1048576) os << (static_cast<double>(size) / 1024.0) << " KiB";
  else if (size <= 1073741824ULL) os << static_cast<double>(size) / 1048576.0 << " MiB";
  else os << static_cast<double>(size) / 1073741824.0 << " GiB";
  return os.str();
}

size_t round_size(size_t size) {
  if (size < kMinBlockSize) return kMinBlockSize;
  return kMinBlockSize * ((size + kMinBlockSize - 1) / kMinBlockSize);
}

size_t segment_size_for(size_t size) {
  if (size <= kSmallSize) return kSmallBuffer;
  if (size < kMinLargeAlloc) return kLargeBuffer;
  return kRoundLarge * ((size + kRoundLarge - 1) / kRoundLarge);
}

template <typename F>
void for_each_stat(BlockPool* pool, F&& f) {
  f(static_cast<size_t>(StatType::AGGREGATE));
  f(static_cast<size_t>(pool->is_small ? StatType::SMALL_POOL : StatType::LARGE_POOL));
}

class DeviceCachingAllocator {
 public:
  explicit DeviceCachingAllocator(c10::DeviceIndex device)
      : device_(device), no_cache_(memcheck(device)), small_(true), large_(false) {}

  Block* malloc(size_t requested, srStream_t stream) {
    // Checked memory: the exact size, so that the runtime's guard page follows it.
    const size_t size = no_cache_ ? requested : round_size(requested);
    if (no_cache_) release_unreleased();
    std::shared_ptr<GatheredContext> context;
    if (C10_UNLIKELY(history_wants(RecordContext::STATE))) context = gather_context();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      process_events_locked();
      if (Block* block = take_or_reserve_locked(size, stream, context)) {
        return finish_alloc_locked(block, size, requested, context);
      }
      stats_.num_alloc_retries += 1;
      // Nothing can be released while a capture is underway (see the note).
      if (detail::captures_underway()) {
        stats_.num_ooms += 1;
        throw_oom_locked(requested, stream, context);
      }
    }
    // Free what we can and retry once before giving up. Done without the lock:
    // waiting for device work while holding it would deadlock with device tasks
    // that free tensors into this allocator.
    release_cached();
    std::lock_guard<std::mutex> lock(mutex_);
    process_events_locked();
    if (Block* block = take_or_reserve_locked(size, stream, context)) {
      return finish_alloc_locked(block, size, requested, context);
    }
    stats_.num_ooms += 1;
    throw_oom_locked(requested, stream, context);
  }

  void free(void* ptr) {
    std::shared_ptr<GatheredContext> context;
    if (C10_UNLIKELY(history_wants(RecordContext::ALL))) context = gather_context();
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = allocated_.find(ptr);
    TORCH_INTERNAL_ASSERT(it != allocated_.end(), "sunrise allocator: freeing unknown pointer ", ptr);
    Block* block = it->second;
    allocated_.erase(it);
    block->allocated = false;
    for_each_stat(block->pool, [&](size_t t) {
      stats_.allocation[t].decrease(1);
      stats_.allocated_bytes[t].decrease(block->size);
      stats_.requested_bytes[t].decrease(block->requested_size);
    });
    c10::reportMemoryUsageToProfiler(block->ptr, -static_cast<int64_t>(block->size),
                                     stats_.allocated_bytes[0].current, stats_.reserved_bytes[0].current,
                                     c10::Device(c10::DeviceType::PrivateUse1, device_));
    if (C10_UNLIKELY(history_.record_events)) {
      record_trace_locked(TraceEntry::FREE_REQUESTED, block->ptr, block->requested_size, block->stream,
                          context ? context : block->context);
    }
    if (block->stream_uses.empty()) {
      release_block_locked(block);
    } else if (detail::captures_underway()) {
      deferred_frees_.push_back(block);
    } else {
      insert_events_locked(block);
    }
  }

  void record_stream(void* ptr, srStream_t stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = allocated_.find(ptr);
    if (it == allocated_.end()) return;  // not a base pointer of ours: nothing to track
    Block* block = it->second;
    if (stream == block->stream) return;
    if (std::find(block->stream_uses.begin(), block->stream_uses.end(), stream) == block->stream_uses.end())
      block->stream_uses.push_back(stream);
  }

  void empty_cache() { release_cached(); }

  void record_history(bool record_events, CreateContextFn gather, size_t max_entries, RecordContext when,
                      bool clear_history) {
    std::lock_guard<std::mutex> lock(mutex_);
    history_.record_events = record_events;
    history_.gather = when != RecordContext::NEVER ? gather : nullptr;
    history_.max_entries = std::max<size_t>(max_entries, 1);
    history_.when.store(history_.gather != nullptr ? when : RecordContext::NEVER, std::memory_order_relaxed);
    if (history_.gather == nullptr) segment_contexts_.clear();
    if (clear_history || !record_events) {
      history_.entries.clear();
    } else if (history_.next != 0 || history_.entries.size() > history_.max_entries) {
      // Oldest first again, keeping the newest max_entries: a ring of another size.
      std::vector<TraceEntry> kept = trace_locked();
      const size_t keep = std::min(kept.size(), history_.max_entries);
      history_.entries.assign(std::make_move_iterator(kept.end() - static_cast<std::ptrdiff_t>(keep)),
                              std::make_move_iterator(kept.end()));
    }
    history_.next = 0;
  }

  // The history, oldest first.
  std::vector<TraceEntry> trace() {
    std::lock_guard<std::mutex> lock(mutex_);
    return trace_locked();
  }

  // Allocations on streams `filter` accepts go to pool `id` (created, or
  // shared with the graphs already using it) until end_allocate_to_pool.
  void begin_allocate_to_pool(c10::MempoolId_t id, std::function<bool(srStream_t)> filter) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& entry : captures_underway_)
      TORCH_CHECK(entry.first != id, "memory pool (", id.first, ", ", id.second,
                  ") is already being captured into by another graph; captures sharing a pool must run one after "
                  "the other");
    auto it = private_pools_.find(id);
    if (it == private_pools_.end()) {
      private_pools_.emplace(id, std::make_unique<PrivatePool>(id));
    } else {
      it->second->use_count += 1;
    }
    captures_underway_.emplace_back(id, std::move(filter));
  }

  void end_allocate_to_pool(c10::MempoolId_t id) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = std::find_if(captures_underway_.begin(), captures_underway_.end(),
                           [&](const auto& entry) { return entry.first == id; });
    TORCH_INTERNAL_ASSERT(it != captures_underway_.end(), "end_allocate_to_pool: no capture into pool (", id.first,
                          ", ", id.second, ")");
    captures_underway_.erase(it);
  }

  // One graph stops using the pool; the last one hands its memory over to the
  // ordinary pools. The graph's replays must have finished.
  void release_pool(c10::MempoolId_t id) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = private_pools_.find(id);
    TORCH_INTERNAL_ASSERT(it != private_pools_.end(), "release_pool: unknown pool (", id.first, ", ", id.second, ")");
    PrivatePool* pool = it->second.get();
    TORCH_INTERNAL_ASSERT(pool->use_count > 0);
    TORCH_INTERNAL_ASSERT(std::none_of(captures_underway_.begin(), captures_underway_.end(),
                                       [&](const auto& entry) { return entry.first == id; }) ||
                              pool->use_count > 1,
                          "release_pool: the pool is being captured into");
    if (--pool->use_count > 0) return;
    std::vector<Block*> cached;
    for (auto& entry : blocks_) {
      Block* b = entry.first;
      if (b->pool->owner != pool) continue;
      if (b->pool->blocks.erase(b) > 0) cached.push_back(b);
      b->pool = b->pool->is_small ? &small_ : &large_;
    }
    for (Block* b : cached) {
      // Checked memory is never reused: it goes back to the runtime (at the
      // next allocation outside a capture), which makes it inaccessible.
      if (no_cache_) take_segment_locked(b, unreleased_);
      else b->pool->blocks.insert(b);
    }
    private_pools_.erase(it);
  }

  int pool_use_count(c10::MempoolId_t id) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = private_pools_.find(id);
    return it == private_pools_.end() ? 0 : it->second->use_count;
  }

  DeviceStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

  void reset_accumulated() {
    std::lock_guard<std::mutex> lock(mutex_);
    auto reset = [](StatArray& a) {
      for (Stat& s : a) s.reset_accumulated();
    };
    reset(stats_.allocation);
    reset(stats_.segment);
    reset(stats_.active);
    reset(stats_.inactive_split);
    reset(stats_.allocated_bytes);
    reset(stats_.reserved_bytes);
    reset(stats_.active_bytes);
    reset(stats_.inactive_split_bytes);
    reset(stats_.requested_bytes);
    stats_.num_alloc_retries = 0;
    stats_.num_ooms = 0;
    stats_.num_sync_all_streams = 0;
    stats_.num_device_alloc = 0;
    stats_.num_device_free = 0;
    stats_.oversize_allocations.reset_accumulated();
    stats_.oversize_segments.reset_accumulated();
  }

  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    auto reset = [](StatArray& a) {
      for (Stat& s : a) s.reset_peak();
    };
    reset(stats_.allocation);
    reset(stats_.segment);
    reset(stats_.active);
    reset(stats_.inactive_split);
    reset(stats_.allocated_bytes);
    reset(stats_.reserved_bytes);
    reset(stats_.active_bytes);
    reset(stats_.inactive_split_bytes);
    reset(stats_.requested_bytes);
    stats_.oversize_allocations.reset_peak();
    stats_.oversize_segments.reset_peak();
  }

  void set_fraction(double fraction) {
    std::lock_guard<std::mutex> lock(mutex_);
    fraction_ = fraction;
  }
  double fraction() {
    std::lock_guard<std::mutex> lock(mutex_);
    return fraction_;
  }

  void append_snapshot(std::vector<SegmentInfo>& out) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& entry : blocks_) {
      Block* head = entry.second.get();
      if (head->prev != nullptr) continue;  // visit each segment from its first block
      SegmentInfo seg;
      seg.device = device_;
      seg.address = reinterpret_cast<size_t>(head->ptr);
      seg.stream = head->stream;
      seg.is_large = !head->pool->is_small;
      if (C10_UNLIKELY(!segment_contexts_.empty())) {
        auto found = segment_contexts_.find(head->ptr);
        if (found != segment_contexts_.end()) seg.context_when_allocated = found->second;
      }
      if (head->pool->owner != nullptr) seg.owner_private_pool_id = head->pool->owner->id;
      for (Block* b = head; b != nullptr; b = b->next) {
        c10::CachingDeviceAllocator::BlockInfo info;
        info.size = b->size;
        info.requested_size = b->allocated ? b->requested_size : 0;
        info.allocated = b->allocated;
        info.active = b->allocated || b->pending_events > 0 || !b->stream_uses.empty();
        if (info.allocated) info.context_when_allocated = b->context;
        seg.total_size += b->size;
        if (info.allocated) {
          seg.allocated_size += b->size;
          seg.requested_size += b->requested_size;
        }
        if (info.active) seg.active_size += b->size;
        seg.blocks.push_back(info);
      }
      out.push_back(std::move(seg));
    }
    std::sort(out.begin(), out.end(), [](const SegmentInfo& a, const SegmentInfo& b) { return a.address < b.address; });
  }

 private:
  BlockPool& pool_for_locked(size_t size, srStream_t stream) {
    if (C10_UNLIKELY(!captures_underway_.empty())) {
      for (auto it = captures_underway_.rbegin(); it != captures_underway_.rend(); ++it) {
        if (!it->second(stream)) continue;
        auto found = private_pools_.find(it->first);
        TORCH_INTERNAL_ASSERT(found != private_pools_.end(), "sunrise allocator: capture into a released pool");
        PrivatePool& pool = *found->second;
        return size <= kSmallSize ? pool.small : pool.large;
      }
    }
    return size <= kSmallSize ? small_ : large_;
  }

  Block* take_or_reserve_locked(size_t size, srStream_t stream, const std::shared_ptr<GatheredContext>& context) {
    BlockPool& pool = pool_for_locked(size, stream);
    if (no_cache_) return reserve_segment_locked(pool, stream, size, context);
    Block* block = take_free_block_locked(pool, stream, size);
    if (block == nullptr) block = reserve_segment_locked(pool, stream, segment_size_for(size), context);
    return block;
  }

  Block* finish_alloc_locked(Block* block, size_t size, size_t requested,
                             const std::shared_ptr<GatheredContext>& context) {
    block = split_locked(block, size);
    block->allocated = true;
    block->requested_size = requested;
    if (C10_UNLIKELY(context != nullptr)) block->context = context;
    if (C10_UNLIKELY(history_.record_events)) {
      record_trace_locked(TraceEntry::ALLOC, block->ptr, requested, block->stream, context);
    }
    allocated_.emplace(block->ptr, block);
    for_each_stat(block->pool, [&](size_t t) {
      stats_.allocation[t].increase(1);
      stats_.allocated_bytes[t].increase(block->size);
      stats_.active[t].increase(1);
      stats_.active_bytes[t].increase(block->size);
      stats_.requested_bytes[t].increase(block->requested_size);
    });
    c10::reportMemoryUsageToProfiler(block->ptr, static_cast<int64_t>(block->size),
                                     stats_.allocated_bytes[0].current, stats_.reserved_bytes[0].current,
                                     c10::Device(c10::DeviceType::PrivateUse1, device_));
    return block;
  }

  // Waits for pending cross-stream frees, then returns every unused whole
  // segment to the runtime. Called without the lock (see malloc).
  void release_cached() {
    // Waiting for the device is what a capture cannot do (on any device:
    // the runtime's prohibitions are per thread, not per device).
    if (detail::captures_underway()) return;
    // Queued device work holds references to the tensors it uses, so memory
    // the host has already dropped comes back only once that work has run:
    // drain the device first, or an OOM retry would find nothing to release.
    device_synchronize(device_);
    std::vector<srEvent_t> waits;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (const auto& p : pending_) waits.push_back(p.first);
      if (!waits.empty()) stats_.num_sync_all_streams += 1;
    }
    for (srEvent_t e : waits) SUNRISE_WARN(srEventSynchronize(e));
    std::vector<std::unique_ptr<Block>> released;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      process_events_locked();
      take_whole_segments_locked(large_, released);
      take_whole_segments_locked(small_, released);
    }
    for (const auto& block : released) SUNRISE_CHECK(srFree(block->ptr));
    release_unreleased();
  }

  // Under SUNRISE_MEMCHECK=1 nothing is cached: a freed block's memory goes
  // back to the runtime, which makes it inaccessible, so that a later use is
  // reported. Its srFree (which waits for the device, as cudaFree does) runs
  // at the next allocation or release on the host: a free may come from a
  // device thread dropping the last view of a tensor, and waiting for the
  // device there would wait for itself.
  static bool memcheck(c10::DeviceIndex device) {
    srDeviceProp prop{};
    return srGetDeviceProperties(&prop, device) == srSuccess && prop.memcheck != 0;
  }

  void unlink_segment_locked(Block* block) {
    for_each_stat(block->pool, [&](size_t t) {
      stats_.active[t].decrease(1);
      stats_.active_bytes[t].decrease(block->size);
    });
    take_segment_locked(block, unreleased_);
  }

  void release_unreleased() {
    std::vector<std::unique_ptr<Block>> blocks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (detail::captures_underway()) return;  // srFree waits for the device
      blocks.swap(unreleased_);
    }
    for (const auto& block : blocks) SUNRISE_CHECK(srFree(block->ptr));
  }

  Block* take_free_block_locked(BlockPool& pool, srStream_t stream, size_t size) {
    Block key;
    key.stream = stream;
    key.size = size;
    auto it = pool.blocks.lower_bound(&key);
    if (it == pool.blocks.end() || (*it)->stream != stream) return nullptr;
    Block* block = *it;
    pool.blocks.erase(it);
    if (block->is_split()) {
      for_each_stat(&pool, [&](size_t t) {
        stats_.inactive_split[t].decrease(1);
        stats_.inactive_split_bytes[t].decrease(block->size);
      });
    }
    return block;
  }

  Block* reserve_segment_locked(BlockPool& pool, srStream_t stream, size_t size,
                                const std::shared_ptr<GatheredContext>& context) {
    int64_t reserved = stats_.reserved_bytes[0].current;
    if (fraction_ < 1.0) {
      const auto cap = static_cast<int64_t>(fraction_ * static_cast<double>(capacity()));
      if (reserved + static_cast<int64_t>(size) > cap) return nullptr;
    }
    void* ptr = nullptr;
    srError_t err = srSuccess;
    {
      const SunriseGuard guard(static_cast<c10::DeviceIndex>(device_));
      err = srMalloc(&ptr, size);
    }
    if (err == srErrorMemoryAllocation) return nullptr;
    SUNRISE_CHECK(err);
    auto owned = new_block_locked();
    Block* block = owned.get();
    block->device = device_;
    block->stream = stream;
    block->size = size;
    block->ptr = static_cast<char*>(ptr);
    block->pool = &pool;
    blocks_.emplace(block, std::move(owned));
    stats_.num_device_alloc += 1;
    for_each_stat(&pool, [&](size_t t) {
      stats_.segment[t].increase(1);
      stats_.reserved_bytes[t].increase(size);
    });
    // Kept by the segment's address, which its first block keeps through merges.
    if (C10_UNLIKELY(context != nullptr)) segment_contexts_[block->ptr] = context;
    if (C10_UNLIKELY(history_.record_events)) {
      record_trace_locked(TraceEntry::SEGMENT_ALLOC, block->ptr, size, stream, context);
    }
    return block;
  }

  bool should_split(const Block* block, size_t size) const {
    const size_t remaining = block->size - size;
    return block->pool->is_small ? remaining >= kMinBlockSize : remaining > kSmallSize;
  }

  Block* split_locked(Block* block, size_t size) {
    if (!should_split(block, size)) return block;
    auto owned = new_block_locked();
    Block* rest = owned.get();
    rest->device = device_;
    rest->stream = block->stream;
    rest->pool = block->pool;
    rest->ptr = block->ptr + size;
    rest->size = block->size - size;
    rest->prev = block;
    rest->next = block->next;
    if (rest->next != nullptr) rest->next->prev = rest;
    block->next = rest;
    block->size = size;
    blocks_.emplace(rest, std::move(owned));
    rest->pool->blocks.insert(rest);
    for_each_stat(rest->pool, [&](size_t t) {
      stats_.inactive_split[t].increase(1);
      stats_.inactive_split_bytes[t].increase(rest->size);
    });
    return block;
  }

  // A block whose free waits for the end of all captures (deferred_frees_)
  // still has its stream uses: it is not free yet.
  bool mergeable(const Block* b) const {
    return b != nullptr && !b->allocated && b->pending_events == 0 && b->stream_uses.empty();
  }

  // Merges `src` (a free neighbour, currently in the pool) into `dst`.
  void merge_locked(Block* dst, Block* src) {
    src->pool->blocks.erase(src);
    for_each_stat(src->pool, [&](size_t t) {
      stats_.inactive_split[t].decrease(1);
      stats_.inactive_split_bytes[t].decrease(src->size);
    });
    if (dst->prev == src) {
      dst->ptr = src->ptr;
      dst->prev = src->prev;
      if (dst->prev != nullptr) dst->prev->next = dst;
    } else {
      dst->next = src->next;
      if (dst->next != nullptr) dst->next->prev = dst;
    }
    dst->size += src->size;
    auto owned = blocks_.find(src);
    spare_blocks_.push_back(std::move(owned->second));
    blocks_.erase(owned);
  }

  // Block records are recycled: splits and merges come in pairs on every small op.
  std::unique_ptr<Block> new_block_locked() {
    if (spare_blocks_.empty()) return std::make_unique<Block>();
    std::unique_ptr<Block> block = std::move(spare_blocks_.back());
    spare_blocks_.pop_back();
    *block = Block();
    return block;
  }

  void return_block_locked(Block* block) {
    for_each_stat(block->pool, [&](size_t t) {
      stats_.active[t].decrease(1);
      stats_.active_bytes[t].decrease(block->size);
    });
    block->stream_uses.clear();
    if (mergeable(block->prev)) merge_locked(block, block->prev);
    if (mergeable(block->next)) merge_locked(block, block->next);
    if (block->is_split()) {
      for_each_stat(block->pool, [&](size_t t) {
        stats_.inactive_split[t].increase(1);
        stats_.inactive_split_bytes[t].increase(block->size);
      });
    }
    block->pool->blocks.insert(block);
  }

  srEvent_t take_event_locked() {
    if (!event_pool_.empty()) {
      srEvent_t e = event_pool_.back();
      event_pool_.pop_back();
      return e;
    }
    srEvent_t e = nullptr;
    SUNRISE_CHECK(srEventCreateWithFlags(&e, srEventDisableTiming));
    return e;
  }

  void insert_events_locked(Block* block) {
    for (srStream_t s : block->stream_uses) {
      srEvent_t e = take_event_locked();
      SUNRISE_CHECK(srEventRecord(e, s));
      block->pending_events += 1;
      pending_.emplace_back(e, block);
    }
    block->stream_uses.clear();
  }

  void insert_deferred_events_locked() {
    for (Block* block : deferred_frees_) insert_events_locked(block);
    deferred_frees_.clear();
  }

  void finish_event_locked(size_t i) {
    Block* block = pending_[i].second;
    event_pool_.push_back(pending_[i].first);
    if (--block->pending_events == 0) release_block_locked(block);
  }

  // A block nothing uses any more: cached, or (checked memory outside a
  // private pool) handed back to the runtime.
  void release_block_locked(Block* block) {
    if (C10_UNLIKELY(history_.record_events)) {
      record_trace_locked(TraceEntry::FREE_COMPLETED, block->ptr, block->requested_size, block->stream,
                          block->context);
    }
    if (C10_UNLIKELY(block->context != nullptr)) block->context.reset();
    if (no_cache_ && block->pool->owner == nullptr) {
      unlink_segment_locked(block);
    } else {
      return_block_locked(block);
    }
  }

  void process_events_locked() {
    if (!deferred_frees_.empty() && !detail::captures_underway()) insert_deferred_events_locked();
    if (pending_.empty()) return;
    size_t kept = 0;
    for (size_t i = 0; i < pending_.size(); ++i) {
      const srError_t err = srEventQuery(pending_[i].first);
      // Events are never recorded during a capture; should one be, it is not done.
      if (err == srErrorNotReady || err == srErrorCapturedEvent) {
        pending_[kept++] = pending_[i];
        continue;
      }
      finish_event_locked(i);
    }
    pending_.resize(kept);
  }

  // Moves unused whole segments out of the pool (their stats already
  // reduced); the caller frees them once the lock is released.
  void take_whole_segments_locked(BlockPool& pool, std::vector<std::unique_ptr<Block>>& out) {
    for (auto it = pool.blocks.begin(); it != pool.blocks.end();) {
      Block* block = *it;
      if (block->is_split()) {
        ++it;
        continue;
      }
      it = pool.blocks.erase(it);
      take_segment_locked(block, out);
    }
  }

  // Moves a whole segment (one unsplit block) out of the allocator's records
  // into `out`, for srFree once the lock is released.
  void take_segment_locked(Block* block, std::vector<std::unique_ptr<Block>>& out) {
    if (C10_UNLIKELY(history_.record_events)) {
      record_trace_locked(TraceEntry::SEGMENT_FREE, block->ptr, block->size, block->stream, nullptr);
    }
    if (C10_UNLIKELY(!segment_contexts_.empty())) segment_contexts_.erase(block->ptr);
    stats_.num_device_free += 1;
    for_each_stat(block->pool, [&](size_t t) {
      stats_.segment[t].decrease(1);
      stats_.reserved_bytes[t].decrease(block->size);
    });
    auto owned = blocks_.find(block);
    out.push_back(std::move(owned->second));
    blocks_.erase(owned);
  }

  size_t capacity() const {
    srDeviceProp prop{};
    SUNRISE_CHECK(srGetDeviceProperties(&prop, device_));
    return prop.totalGlobalMem;
  }

  // Memory history: whether events of level `when` keep a stack (no lock:
  // checked on every allocation and free), and that stack.
  bool history_wants(RecordContext when) const { return history_.when.load(std::memory_order_relaxed) >= when; }
  std::shared_ptr<GatheredContext> gather_context() {
    CreateContextFn gather = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      gather = history_.gather;
    }
    return gather != nullptr ? gather() : nullptr;
  }

  void record_trace_locked(TraceEntry::Action action, const void* addr, size_t size, srStream_t stream,
                           std::shared_ptr<GatheredContext> context) {
    const bool keep_context = history_.when.load(std::memory_order_relaxed) >= RecordContext::ALLOC;
    const c10::MempoolId_t pool{0, 0};
    TraceEntry entry(action, device_, reinterpret_cast<size_t>(addr), size, stream, pool,
                     static_cast<c10::approx_time_t>(c10::getTime()), keep_context ? std::move(context) : nullptr);
    if (history_.entries.size() < history_.max_entries) {
      history_.entries.push_back(std::move(entry));
    } else {
      history_.entries[history_.next] = std::move(entry);
      history_.next = (history_.next + 1) % history_.max_entries;
    }
  }

  std::vector<TraceEntry> trace_locked() const {
    std::vector<TraceEntry> out;
    out.reserve(history_.entries.size());
    const size_t n = history_.entries.size();
    for (size_t i = 0; i < n; ++i) out.push_back(history_.entries[(history_.next + i) % n]);
    return out;
  }

  [[noreturn]] void throw_oom_locked(size_t requested, srStream_t stream,
                                     const std::shared_ptr<GatheredContext>& context) {
    size_t free_bytes = 0, total = 0;
    {
      const SunriseGuard guard(static_cast<c10::DeviceIndex>(device_));
      SUNRISE_CHECK(srMemGetInfo(&free_bytes, &total));
    }
    if (history_.record_events) {
      record_trace_locked(TraceEntry::OOM, reinterpret_cast<const void*>(free_bytes), requested, stream, context);
    }
    const auto allocated = static_cast<uint64_t>(stats_.allocated_bytes[0].current);
    const auto reserved = static_cast<uint64_t>(stats_.reserved_bytes[0].current);
    std::ostringstream extra;
    if (fraction_ < 1.0) {
      extra << " This process is limited to " << format_size(static_cast<uint64_t>(fraction_ * double(total)))
            << " by set_per_process_memory_fraction(" << fraction_ << ").";
    }
    TORCH_CHECK_WITH(OutOfMemoryError, false, "Sunrise out of memory. Tried to allocate ", format_size(requested),
                     ". sunrise:", static_cast<int>(device_), " has a total capacity of ", format_size(total),
                     " of which ", format_size(free_bytes), " is free. Of the memory in use, ",
                     format_size(allocated), " is allocated by PyTorch, and ", format_size(reserved - allocated),
                     " is reserved by PyTorch but unallocated.", extra.str(),
                     " Try: freeing tensors you no longer need (del, then torch.sunrise.empty_cache()), a smaller "
                     "batch size, or a larger device (SUNRISE_DEVICE_MEMORY, e.g. 32GiB).");
  }

  const c10::DeviceIndex device_;
  const bool no_cache_;  // SUNRISE_MEMCHECK=1
  std::mutex mutex_;  // guards everything below
  BlockPool small_;
  BlockPool large_;
  ska::flat_hash_map<Block*, std::unique_ptr<Block>> blocks_;  // owns every block
  std::vector<std::unique_ptr<Block>> spare_blocks_;
  std::vector<std::unique_ptr<Block>> unreleased_;  // freed, srFree pending (no_cache_)
  ska::flat_hash_map<void*, Block*> allocated_;
  std::vector<std::pair<srEvent_t, Block*>> pending_;  // cross-stream frees in flight
  std::vector<srEvent_t> event_pool_;
  ska::flat_hash_map<c10::MempoolId_t, std::unique_ptr<PrivatePool>, c10::MempoolIdHash> private_pools_;
  // Pools being captured into, newest last, with the test for their streams.
  std::vector<std::pair<c10::MempoolId_t, std::function<bool(srStream_t)>>> captures_underway_;
  std::vector<Block*> deferred_frees_;  // freed with stream uses during a capture
  // "Oversize" is relative to max_split_size, unlimited here as in CUDA's
  // default configuration (-1 below), so those counters stay at zero.
  DeviceStats stats_ = [] {
    DeviceStats s;
    s.max_split_size = -1;
    return s;
  }();
  double fraction_ = 1.0;
  struct History {
    bool record_events = false;
    // Read without the lock by gather_context, to keep the common path free.
    std::atomic<RecordContext> when{RecordContext::NEVER};
    CreateContextFn gather = nullptr;
    size_t max_entries = 1;
    std::vector<TraceEntry> entries;  // a ring once full: `next` is the oldest
    size_t next = 0;
  } history_;
  ska::flat_hash_map<char*, std::shared_ptr<GatheredContext>> segment_contexts_;  // by segment address
};

void free_sunrise_memory(void* ctx);

class SunriseCachingAllocator final : public c10::DeviceAllocator {
 public:
  DeviceCachingAllocator& device(c10::DeviceIndex index) {
    check_device_index(index);
    if (!initialized_.load(std::memory_order_acquire)) {
      std::call_once(init_once_, [this] {
        const c10::DeviceIndex n = device_count();
        for (c10::DeviceIndex i = 0; i < n; ++i) devices_.push_back(std::make_unique<DeviceCachingAllocator>(i));
        initialized_.store(true, std::memory_order_release);
      });
    }
    return *devices_[static_cast<size_t>(index)];
  }

  c10::DataPtr allocate(size_t nbytes) override {
    const c10::DeviceIndex index = current_device();
    const c10::Device dev(c10::DeviceType::PrivateUse1, index);
    if (nbytes == 0) return {nullptr, nullptr, &free_sunrise_memory, dev};
    // Blocks that finished device work still holds are free: reuse them first.
    // (An allocation that fails synchronizes, which releases them all.)
    release_finished_tasks_now_and_then();
    Block* block = device(index).malloc(nbytes, getCurrentSunriseStream(index).handle());
    return {block->ptr, block, &free_sunrise_memory, dev};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &free_sunrise_memory; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    SUNRISE_CHECK(srMemcpy(dest, src, count, srMemcpyDeviceToDevice));
  }

  bool initialized() override { return true; }

  void emptyCache(c10::MempoolId_t /*mempool_id*/) override {
    for (c10::DeviceIndex i = 0; i < device_count(); ++i) device(i).empty_cache();
  }

  void recordStream(const c10::DataPtr& ptr, c10::Stream stream) override {
    if (ptr.get() == nullptr) return;
    const SunriseStream s(stream);
    device(ptr.device().index()).record_stream(ptr.get(), s.handle());
  }

  DeviceStats getDeviceStats(c10::DeviceIndex index) override {
    release_finished_tasks();  // what finished device work still held is free
    return device(index).stats();
  }
  void resetAccumulatedStats(c10::DeviceIndex index) override { device(index).reset_accumulated(); }
  void resetPeakStats(c10::DeviceIndex index) override { device(index).reset_peak(); }

  std::pair<size_t, size_t> getMemoryInfo(c10::DeviceIndex index) override {
    check_device_index(index);
    const SunriseGuard guard(index);
    size_t free_bytes = 0, total = 0;
    SUNRISE_CHECK(srMemGetInfo(&free_bytes, &total));
    return {free_bytes, total};
  }

  void free_block(Block* block) { device(block->device).free(block->ptr); }

 private:
  std::once_flag init_once_;
  std::atomic<bool> initialized_{false};  // std::call_once costs a TLS round trip per allocation
  std::vector<std::unique_ptr<DeviceCachingAllocator>> devices_;
};

SunriseCachingAllocator& instance() {
  // Leaked on purpose: tensors freed during interpreter shutdown still need it.
  static auto& a = *std::make_unique<SunriseCachingAllocator>().release();
  return a;
}

void free_sunrise_memory(void* ctx) {
  if (ctx == nullptr) return;
  instance().free_block(static_cast<Block*>(ctx));
}

struct Registerer {
  Registerer() { c10::SetAllocator(c10::DeviceType::PrivateUse1, &instance()); }
};
const Registerer g_registerer;

}  // namespace

c10::DeviceAllocator* get() { return &instance(); }
void recordStream(const c10::DataPtr& data_ptr, SunriseStream stream) { instance().recordStream(data_ptr, stream); }
void recordUseOnStream(const c10::DataPtr& data_ptr, srStream_t stream) {
  if (data_ptr.get_deleter() != &free_sunrise_memory || data_ptr.get_context() == nullptr) return;
  const auto* block = static_cast<const Block*>(data_ptr.get_context());
  if (block->stream == stream) return;  // a block's stream is fixed while it is allocated
  instance().device(block->device).record_stream(block->ptr, stream);
}
void emptyCache() { instance().emptyCache({0, 0}); }
DeviceStats getDeviceStats(c10::DeviceIndex device) { return instance().getDeviceStats(device); }
void resetAccumulatedStats(c10::DeviceIndex device) { instance().resetAccumulatedStats(device); }
void resetPeakStats(c10::DeviceIndex device) { instance().resetPeakStats(device); }

void recordHistory(bool record_events, CreateContextFn gather, size_t max_entries, RecordContext when,
                   bool clear_history) {
  for (c10::DeviceIndex i = 0; i < device_count(); ++i) {
    instance().device(i).record_history(record_events, gather, max_entries, when, clear_history);
  }
}

std::vector<std::vector<TraceEntry>> traces() {
  release_finished_tasks();
  std::vector<std::vector<TraceEntry>> out;
  for (c10::DeviceIndex i = 0; i < device_count(); ++i) out.push_back(instance().device(i).trace());
  return out;
}

std::vector<SegmentInfo> snapshot() {
  release_finished_tasks();
  std::vector<SegmentInfo> out;
  for (c10::DeviceIndex i = 0; i < device_count(); ++i) instance().device(i).append_snapshot(out);
  return out;
}

void setMemoryFraction(double fraction, c10::DeviceIndex device) {
  TORCH_CHECK_VALUE(fraction >= 0.0 && fraction <= 1.0, "Invalid fraction value: ", fraction,
                    ". Allowed range: 0~1");
  instance().device(device).set_fraction(fraction);
}

double getMemoryFraction(c10::DeviceIndex device) { return instance().device(device).fraction(); }

void beginAllocateToPool(c10::DeviceIndex device, c10::MempoolId_t pool, std::function<bool(srStream_t)> filter) {
  instance().device(device).begin_allocate_to_pool(pool, std::move(filter));
}
void endAllocateToPool(c10::DeviceIndex device, c10::MempoolId_t pool) {
  instance().device(device).end_allocate_to_pool(pool);
}
void releasePool(c10::DeviceIndex device, c10::MempoolId_t pool) { instance().device(device).release_pool(pool); }
int getPoolUseCount(c10::DeviceIndex device, c10::MempoolId_t pool) {
  return instance().device(device).pool_use_count(pool);
}

}  // namespace torch_sunrise::caching_allocator
