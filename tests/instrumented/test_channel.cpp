// Channel<T>: one contract run for every policy, policy behaviour when full, the control lane,
// lossless close, cancellation, and exact accounting across threads and coroutines.
#include <atomic>
#include <chrono>
#include <latch>
#include <memory>
#include <numeric>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>

#include "stallscope/channel.hpp"
#include "support/metrics.hpp"
#include "support/poll.hpp"
#include "support/tasks.hpp"

namespace asio = boost::asio;
using stallscope::Channel;
using stallscope::ChannelOptions;
using stallscope::OverflowPolicy;
using stallscope::SendOutcome;
using namespace stallscope::testing;

namespace {

// Every overflow policy, for the tests that run once for each.
const std::vector<OverflowPolicy> kEveryPolicy = {
    OverflowPolicy::kWait, OverflowPolicy::kDropOldest, OverflowPolicy::kDropNewest,
    OverflowPolicy::kMerge, OverflowPolicy::kShed};

ChannelOptions<int> options_for(OverflowPolicy policy, std::size_t capacity) {
  ChannelOptions<int> o{.capacity = capacity, .policy = policy};
  if (policy == OverflowPolicy::kMerge) {
    o.merge = [](int& queued, int& incoming) {
      queued += incoming;  // a sum: merging keeps the total
      return true;
    };
  }
  return o;
}

double items(const std::string& name, std::string_view outcome, std::string_view lane = "data") {
  return value("stallscope_channel_items_total",
               {{"resource", name}, {"lane", std::string(lane)}, {"outcome", std::string(outcome)}})
      .value_or(-1);
}

double sent(const std::string& name, std::string_view lane = "data") {
  return value("stallscope_channel_sent_total", {{"resource", name}, {"lane", std::string(lane)}})
      .value_or(-1);
}

// sent == sum(outcomes) + depth, for both lanes together.
void check_identity(const std::string& name) {
  if constexpr (!STALLSCOPE_ENABLED) return;
  double fates = 0;
  for (const char* lane : {"data", "control"}) {
    for (const char* o : {"delivered", "dropped", "merged", "shed", "closed", "cancelled",
                          "timed_out", "drained"}) {
      fates += items(name, o, lane);
    }
  }
  const double depth = value("stallscope_channel_depth", {{"resource", name}}).value_or(0);
  CHECK(sent(name, "data") + sent(name, "control") == fates + depth);
}

// Fills `ch`, a channel of capacity 2, with 1 and 2, sends 3, and checks what that send did:
// its outcome, whether the new item went in, the item it handed back, and what is left queued.
void check_send_past_full(Channel<int>& ch, SendOutcome outcome, bool accepted, int handed_back,
                          const std::vector<int>& left) {
  REQUIRE(ch.send(1).accepted());
  REQUIRE(ch.send(2).accepted());
  auto r = ch.send(3);
  CHECK(r.outcome == outcome);
  CHECK(r.accepted() == accepted);
  CHECK(r.item == handed_back);
  CHECK(ch.drain() == left);
}
// Spawns a coroutine on `io` that hands every item it receives from `ch` to `take`, until a
// receive fails; the error it failed with goes to `ended`.
template <class Take>
void spawn_receiver(asio::io_context& io, Channel<int>& ch, Take take,
                    boost::system::error_code& ended) {
  asio::co_spawn(
      io,
      [&ch, take, &ended]() mutable -> asio::awaitable<void> {
        for (;;) {
          auto [ec, v] = co_await ch.async_receive(asio::as_tuple(asio::use_awaitable));
          if (ec) {
            ended = ec;
            co_return;
          }
          take(v);
        }
      },
      asio::detached);
}

}  // namespace

TEST_CASE("bad channel configuration is rejected with the value named", "[channel]") {
  CHECK_THROWS_WITH(Channel<int>("zero-cap", 0), Catch::Contains("capacity 0"));
  CHECK_THROWS_WITH(Channel<int>("no-merge", ChannelOptions<int>{.capacity = 1,
                                                                 .policy = OverflowPolicy::kMerge}),
                    Catch::Contains("merge"));
  CHECK_THROWS_WITH(
      Channel<int>("bad-ctl", ChannelOptions<int>{.capacity = 1, .control_capacity = 0}),
      Catch::Contains("control_capacity 0"));
  CHECK_THROWS_WITH(
      Channel<int>("bad-shed",
                   ChannelOptions<int>{.capacity = 1, .shed_after = std::chrono::seconds(1)}),
      Catch::Contains("shed_after"));
  if constexpr (STALLSCOPE_ENABLED) {
    CHECK_THROWS_WITH(Channel<int>("bad name", 1), Catch::Contains("\"bad name\""));
  }
}

TEST_CASE("every policy keeps the channel contract", "[channel][contract]") {
  const OverflowPolicy policy = GENERATE(from_range(kEveryPolicy));
  INFO("policy " << stallscope::to_string(policy));
  const std::string name = unique_name("contract");
  Channel<int> ch(name, options_for(policy, 4));

  SECTION("items come out in the order they went in") {
    for (int i = 0; i < 4; ++i) CHECK(ch.send(i).outcome == SendOutcome::kEnqueued);
    CHECK(ch.size() == 4);
    for (int i = 0; i < 4; ++i) CHECK(ch.receive() == i);
    CHECK_FALSE(ch.try_receive().has_value());
  }
  SECTION("control messages overtake queued data") {
    for (int i = 0; i < 4; ++i) REQUIRE(ch.try_send(i).accepted());  // data lane full
    CHECK(ch.send_control(-1).outcome == SendOutcome::kEnqueued);
    CHECK(ch.receive() == -1);
    CHECK(ch.receive() == 0);
  }
  SECTION("close refuses new sends, keeps queued items, then reports closed") {
    REQUIRE(ch.send(1).accepted());
    REQUIRE(ch.send(2).accepted());
    ch.close();
    auto r = ch.send(3);
    CHECK(r.outcome == SendOutcome::kClosed);
    CHECK(r.item == 3);  // given back
    CHECK(ch.receive() == 1);
    CHECK(ch.receive() == 2);
    CHECK_FALSE(ch.receive().has_value());
    CHECK(ch.closed());
  }
  SECTION("drain takes out what is left, control first") {
    REQUIRE(ch.send(1).accepted());
    REQUIRE(ch.send(2).accepted());
    REQUIRE(ch.send_control(9).accepted());
    ch.close();
    CHECK(ch.drain() == std::vector<int>{9, 1, 2});
    CHECK(ch.size() == 0);
  }
  SECTION("try_send never blocks on a full channel") {
    for (int i = 0; i < 4; ++i) REQUIRE(ch.try_send(i).accepted());
    const auto r = ch.try_send(100);
    CHECK(r.outcome != SendOutcome::kEnqueued);
    CHECK(ch.size() == 4);
  }
  ch.close();
  ch.drain();
  check_identity(name);
}

TEST_CASE("a full channel applies its policy", "[channel][policy]") {
  const std::string name = unique_name("full");
  SECTION("drop_oldest evicts the oldest and hands it back") {
    Channel<int> ch(name, 2, OverflowPolicy::kDropOldest);
    check_send_past_full(ch, SendOutcome::kDroppedOldest, true, 1, {2, 3});
    if constexpr (STALLSCOPE_ENABLED) CHECK(items(name, "dropped") == 1);
  }
  SECTION("drop_newest refuses the new item") {
    Channel<int> ch(name, 2, OverflowPolicy::kDropNewest);
    check_send_past_full(ch, SendOutcome::kDroppedNewest, false, 3, {1, 2});
  }
  SECTION("merge folds the new item into a queued one by key") {
    struct Update {
      int key = 0;
      int value = 0;
    };
    Channel<Update> ch(name, ChannelOptions<Update>{.capacity = 2,
                                                    .policy = OverflowPolicy::kMerge,
                                                    .merge = [](Update& queued, Update& incoming) {
                                                      if (queued.key != incoming.key) return false;
                                                      queued.value =
                                                          incoming.value;  // newest value wins
                                                      return true;
                                                    }});
    REQUIRE(ch.send({1, 10}).accepted());
    REQUIRE(ch.send({2, 20}).accepted());
    CHECK(ch.send({1, 11}).outcome == SendOutcome::kMerged);
    auto miss = ch.send({3, 30});
    CHECK(miss.outcome == SendOutcome::kShed);  // no queued item with key 3
    CHECK(miss.item->key == 3);
    auto left = ch.drain();
    REQUIRE(left.size() == 2);
    CHECK(left[0].value == 11);
    CHECK(left[1].value == 20);
    if constexpr (STALLSCOPE_ENABLED) CHECK(items(name, "merged") == 1);
  }
  SECTION("a merge function that throws sheds the item and is counted") {
    Channel<int> ch(
        name, ChannelOptions<int>{
                  .capacity = 1, .policy = OverflowPolicy::kMerge, .merge = [](int&, int&) -> bool {
                    throw std::runtime_error("merge bug");
                  }});
    REQUIRE(ch.send(1).accepted());
    auto r = ch.send(2);
    CHECK(r.outcome == SendOutcome::kShed);
    CHECK(r.item == 2);
    CHECK(ch.receive() == 1);  // the queued item is untouched and still delivered
    if constexpr (STALLSCOPE_ENABLED) {
      CHECK(value("stallscope_channel_merge_errors_total", {{"resource", name}}) == 1);
    }
  }
  SECTION("shed fails fast when full") {
    Channel<int> ch(name, 1, OverflowPolicy::kShed);
    REQUIRE(ch.send(1).accepted());
    auto r = ch.send(2);
    CHECK(r.outcome == SendOutcome::kShed);
    CHECK(r.item == 2);
  }
  SECTION("shed fails fast when the oldest item has waited past the budget") {
    Channel<int> ch(name, ChannelOptions<int>{.capacity = 100,
                                              .policy = OverflowPolicy::kShed,
                                              .shed_after = std::chrono::nanoseconds(1)});
    REQUIRE(ch.send(1).accepted());
    // Wait until the oldest item is certainly older than 1 ns on the steady clock.
    const auto t = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() == t) {
    }
    if constexpr (STALLSCOPE_ENABLED) {
      CHECK(ch.send(2).outcome == SendOutcome::kShed);  // not full, but stale
    }
    CHECK(ch.receive() == 1);
    CHECK(ch.send(3).outcome == SendOutcome::kEnqueued);  // empty again: accepted
  }
  SECTION("wait blocks the sender until a receiver makes room") {
    Channel<int> ch(name, 1);
    REQUIRE(ch.send(1).accepted());
    std::atomic<bool> done{false};
    std::thread sender([&] {
      CHECK(ch.send(2).outcome == SendOutcome::kEnqueued);
      done = true;
    });
    if constexpr (STALLSCOPE_ENABLED) {
      REQUIRE(eventually([&] {
        return value("stallscope_waiters", {{"resource", name}, {"op", "send"}}) == 1;
      }));
      CHECK(value("stallscope_oldest_wait_age_seconds", {{"resource", name}, {"op", "send"}})
                .value_or(0) > 0);
    }
    CHECK_FALSE(done.load());
    CHECK(ch.receive() == 1);
    sender.join();
    CHECK(ch.receive() == 2);
    if constexpr (STALLSCOPE_ENABLED) {
      const auto w = stallscope::testing::histogram("stallscope_wait_seconds",
                                                    {{"resource", name}, {"op", "send"}});
      REQUIRE(w.has_value());
      CHECK(w->count == 2);  // one immediate send, one that waited
      CHECK(w->sum > 0);
      CHECK(value("stallscope_channel_full_seconds_total", {{"resource", name}}).value_or(0) > 0);
      CHECK(value("stallscope_channel_high_water", {{"resource", name}}) == 1);
    }
  }
  SECTION("send_for gives up and returns the item") {
    Channel<int> ch(name, 1);
    REQUIRE(ch.send(1).accepted());
    auto r = ch.send_for(2, std::chrono::milliseconds(1));
    CHECK(r.outcome == SendOutcome::kTimedOut);
    CHECK(r.item == 2);
    if constexpr (STALLSCOPE_ENABLED) CHECK(items(name, "timed_out") == 1);
  }
  check_identity(name);
}

TEST_CASE("a full control lane sheds instead of waiting", "[channel][control]") {
  Channel<int> ch(unique_name("ctl"), ChannelOptions<int>{.capacity = 1, .control_capacity = 2});
  CHECK(ch.send_control(1).accepted());
  CHECK(ch.send_control(2).accepted());
  auto r = ch.send_control(3);
  CHECK(r.outcome == SendOutcome::kShed);
  CHECK(r.item == 3);
}

TEST_CASE("a stop on the control lane reaches a consumer behind a full data lane",
          "[channel][control][concurrency]") {
  Channel<int> ch(unique_name("stop"), 8);
  for (int i = 0; i < 8; ++i) REQUIRE(ch.send(i).accepted());
  std::thread blocked_producer([&] { (void)ch.send(100); });  // waits: the data lane is full
  CHECK(ch.send_control(-1).outcome == SendOutcome::kEnqueued);
  CHECK(ch.receive() == -1);  // before any of the 8 queued items
  ch.close();
  blocked_producer.join();
  CHECK(ch.drain().size() == 8);
}

TEST_CASE("closing wakes waiting senders with their item and waiting receivers with closed",
          "[channel][close][concurrency]") {
  if constexpr (!STALLSCOPE_ENABLED) return;  // see the destroy test below
  const std::string name = unique_name("close-wake");
  Channel<int> full(name, 1);
  REQUIRE(full.send(1).accepted());
  std::optional<stallscope::SendResult<int>> result;
  std::thread sender([&] { result = full.send(2); });
  const std::string empty_name = unique_name("close-wake-empty");
  Channel<int> empty(empty_name, 1);
  std::optional<int> got = 0;
  std::thread receiver([&] { got = empty.receive(); });
  // Both wait before the close: a thread that arrived after it would take the closed path, not
  // the wake-up this test is for.
  if constexpr (STALLSCOPE_ENABLED) {
    REQUIRE(eventually([&] {
      return value("stallscope_waiters", {{"resource", name}, {"op", "send"}}) == 1;
    }));
    REQUIRE(eventually([&] {
      return value("stallscope_channel_idle_receivers", {{"resource", empty_name}}) == 1;
    }));
  }
  full.close();
  empty.close();
  sender.join();
  receiver.join();
  REQUIRE(result.has_value());
  CHECK(result->outcome == SendOutcome::kClosed);
  CHECK(result->item == 2);
  CHECK_FALSE(got.has_value());
  CHECK(full.receive() == 1);  // what was queued is still delivered
  check_identity(name);
}

TEST_CASE("destroying a channel with a blocked sender wakes it and loses nothing silently",
          "[channel][close][concurrency]") {
  // Knowing the sender is blocked takes the waiters gauge: recording must be compiled in.
  if constexpr (!STALLSCOPE_ENABLED) return;
  const std::string name = unique_name("destroy");
  std::vector<std::string> logged;
  stallscope::set_log_sink(
      [&](stallscope::LogLevel, std::string_view m) { logged.emplace_back(m); });
  std::optional<stallscope::SendResult<int>> result;
  std::thread sender;
  {
    auto ch = std::make_unique<Channel<int>>(name, 1);
    REQUIRE(ch->send(1).accepted());
    sender = std::thread([&, c = ch.get()] { result = c->send(2); });
    if constexpr (STALLSCOPE_ENABLED) {
      REQUIRE(eventually([&] {
        return value("stallscope_waiters", {{"resource", name}, {"op", "send"}}) == 1;
      }));
    }
    ch.reset();  // closes, waits for the sender to leave
  }
  sender.join();
  stallscope::set_log_sink({});
  REQUIRE(result.has_value());
  CHECK(result->outcome == SendOutcome::kClosed);
  CHECK(result->item == 2);
  if constexpr (STALLSCOPE_ENABLED) {
    CHECK(items(name, "dropped") == 1);  // the queued item, counted and logged
    REQUIRE(logged.size() == 1);
    CHECK(logged[0].find(name) != std::string::npos);
  }
}

TEST_CASE("coroutines send and receive with use_awaitable and as_tuple", "[channel][asio]") {
  asio::io_context io;
  Channel<int> ch(unique_name("coro"), 2);
  std::vector<int> got;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        for (int i = 0; i < 10; ++i) {
          auto r = co_await ch.async_send(i);
          CHECK(r.outcome == SendOutcome::kEnqueued);
        }
        ch.close();
      },
      asio::detached);
  boost::system::error_code ended;
  spawn_receiver(
      io, ch, [&](int v) { got.push_back(v); }, ended);
  io.run();
  CHECK(ended == stallscope::make_error_code(stallscope::ChannelErrc::kClosed));
  std::vector<int> want(10);
  std::iota(want.begin(), want.end(), 0);
  CHECK(got == want);
}

TEST_CASE("callbacks complete on their executor, never inline", "[channel][asio]") {
  asio::io_context io;
  Channel<int> ch(unique_name("callback"), 1);
  bool sent_done = false;
  ch.async_send(5, asio::bind_executor(io, [&](stallscope::SendResult<int> r) {
                  CHECK(r.outcome == SendOutcome::kEnqueued);
                  sent_done = true;
                }));
  CHECK_FALSE(sent_done);  // posted, not run inside async_send
  int got = 0;
  ch.async_receive(asio::bind_executor(io, [&](boost::system::error_code ec, int v) {
    CHECK_FALSE(ec);
    got = v;
  }));
  io.run();
  CHECK(sent_done);
  CHECK(got == 5);
}

TEST_CASE("a cancelled async send is not enqueued and gives its item back",
          "[channel][asio][cancel]") {
  const std::string name = unique_name("cancel-send");
  asio::io_context io;
  Channel<std::unique_ptr<int>> ch(name, 1);
  REQUIRE(ch.send(std::make_unique<int>(1)).accepted());
  std::optional<stallscope::SendResult<std::unique_ptr<int>>> result;
  cancel_while_pending(
      io,
      [&](asio::cancellation_slot slot) {
        ch.async_send(std::make_unique<int>(2),
                      asio::bind_cancellation_slot(
                          slot, asio::bind_executor(io, [&](auto r) { result = std::move(r); })));
      },
      [&] { return result.has_value(); });  // waiting: the channel is full
  REQUIRE(result.has_value());
  CHECK(result->outcome == SendOutcome::kCancelled);
  REQUIRE(result->item.has_value());
  CHECK(**result->item == 2);
  CHECK(ch.size() == 1);
  if constexpr (STALLSCOPE_ENABLED) CHECK(items(name, "cancelled") == 1);
}

TEST_CASE("a cancelled async receive takes no item", "[channel][asio][cancel]") {
  asio::io_context io;
  Channel<int> ch(unique_name("cancel-recv"), 4);
  asio::cancellation_signal signal;
  boost::system::error_code got_ec;
  ch.async_receive(asio::bind_cancellation_slot(
      signal.slot(),
      asio::bind_executor(io, [&](boost::system::error_code ec, int) { got_ec = ec; })));
  io.poll();
  signal.emit(asio::cancellation_type::terminal);
  io.run();
  CHECK(got_ec == asio::error::operation_aborted);
  REQUIRE(ch.send(7).accepted());
  CHECK(ch.receive() == 7);  // the later item is not swallowed by the cancelled receive
}

TEST_CASE("a coroutine waiting to receive is woken by a timeout via awaitable operators",
          "[channel][asio][cancel]") {
  asio::io_context io;
  Channel<int> ch(unique_name("race"), 1);
  CHECK(timer_wins_race(io, [&] { return ch.async_receive(); }));
  REQUIRE(ch.send(3).accepted());
  CHECK(ch.try_receive() == 3);
}

TEST_CASE("async_next receives every item, control first, then ends without an error",
          "[channel][asio]") {
  asio::io_context io;
  const std::string name = unique_name("next");
  Channel<std::unique_ptr<int>> ch(name, 8);  // a move-only T: no default T is ever made
  for (int i = 1; i <= 5; ++i) REQUIRE(ch.send(std::make_unique<int>(i)).accepted());
  REQUIRE(ch.send_control(std::make_unique<int>(100)).accepted());
  std::vector<int> got;
  bool ended = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        while (std::optional<std::unique_ptr<int>> v = co_await ch.async_next()) {
          got.push_back(**v);
          if (got.size() == 3) ch.close();  // closed with items queued: they still arrive
        }
        ended = true;
      },
      asio::detached);
  io.run();
  CHECK(ended);
  CHECK(got == std::vector<int>{100, 1, 2, 3, 4, 5});
  if constexpr (STALLSCOPE_ENABLED) CHECK(items(name, "delivered") == 5);
}

TEST_CASE("async_next waiting on an empty channel ends when it is closed",
          "[channel][asio][close]") {
  asio::io_context io;
  Channel<int> ch(unique_name("next-close"), 2);
  std::optional<boost::system::error_code> ec;
  std::optional<int> item = 42;
  ch.async_next(asio::bind_executor(io, [&](boost::system::error_code e, std::optional<int> v) {
    ec = e;
    item = v;
  }));
  io.poll();
  CHECK_FALSE(ec.has_value());  // waiting
  ch.close();
  io.run();
  REQUIRE(ec.has_value());
  CHECK_FALSE(*ec);  // the end is no error
  CHECK_FALSE(item.has_value());
}

TEST_CASE("a cancelled async_next reports operation_aborted and takes no item",
          "[channel][asio][cancel]") {
  asio::io_context io;
  Channel<int> ch(unique_name("next-cancel"), 4);
  asio::cancellation_signal signal;
  boost::system::error_code got_ec;
  std::optional<int> got = 1;
  ch.async_next(asio::bind_cancellation_slot(
      signal.slot(),
      asio::bind_executor(io, [&](boost::system::error_code e, std::optional<int> v) {
        got_ec = e;
        got = v;
      })));
  io.poll();
  signal.emit(asio::cancellation_type::terminal);
  io.run();
  CHECK(got_ec == asio::error::operation_aborted);
  CHECK_FALSE(got.has_value());
  REQUIRE(ch.send(7).accepted());
  CHECK(ch.try_receive() == 7);
}

// Compiled by the dev preset with -Wextra -Werror: a channel option left out must not warn
// (-Wmissing-field-initializers), or every user's -Werror build breaks on the README's form.
TEST_CASE("the README's designated-initializer forms build without warnings", "[channel]") {
  struct Update {
    int key = 0;
    int value = 0;
  };
  Channel<int> plain{unique_name("readme-plain"), {.capacity = 1024}};
  Channel<Update> updates{
      unique_name("readme-merge"),
      {.capacity = 2, .policy = OverflowPolicy::kMerge, .merge = [](Update& q, Update& in) {
         if (q.key != in.key) return false;
         q = in;
         return true;
       }}};
  CHECK(plain.capacity() == 1024);
  REQUIRE(updates.try_send({1, 10}).accepted());
  REQUIRE(updates.try_send({2, 20}).accepted());
  CHECK(updates.try_send({1, 11}).outcome == SendOutcome::kMerged);
  CHECK(updates.try_receive()->value == 11);
}

TEST_CASE("threads and coroutines mixed account for every item exactly",
          "[channel][accounting][concurrency]") {
  const OverflowPolicy policy = GENERATE(from_range(kEveryPolicy));
  INFO("policy " << stallscope::to_string(policy));
  const std::string name = unique_name("mixed");
  Channel<int> ch(name, options_for(policy, 8));
  constexpr int kThreadProducers = 2;
  constexpr int kCoroProducers = 2;
  constexpr int kPerProducer = 2000;
  std::atomic<long long> sent_sum{0};      // every value sent
  std::atomic<long long> returned_sum{0};  // values handed back to senders
  std::atomic<long long> received_sum{0};
  std::atomic<int> producers_left{kThreadProducers + kCoroProducers};

  auto account = [&](int v, const stallscope::SendResult<int>& r) {
    sent_sum += v;
    if (r.item) returned_sum += *r.item;  // refused, or evicted (drop_oldest)
    if (--producers_left == 0) ch.close();
  };
  auto account_one = [&](int v, const stallscope::SendResult<int>& r) {
    sent_sum += v;
    if (r.item) returned_sum += *r.item;
  };

  asio::io_context io;
  for (int p = 0; p < kCoroProducers; ++p) {
    asio::co_spawn(
        io,
        [&, p]() -> asio::awaitable<void> {
          for (int i = 1; i <= kPerProducer; ++i) {
            const int v = p * 100000 + i;
            auto r = co_await ch.async_send(v);
            if (i == kPerProducer) {
              account(v, r);
            } else {
              account_one(v, r);
            }
          }
        },
        asio::detached);
  }
  boost::system::error_code ended;  // written on io_thread, read once it is joined
  spawn_receiver(
      io, ch, [&](int v) { received_sum += v; }, ended);
  std::thread io_thread([&] { io.run(); });
  std::vector<std::thread> threads;
  for (int p = 0; p < kThreadProducers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 1; i <= kPerProducer; ++i) {
        const int v = (p + kCoroProducers) * 100000 + i;
        auto r = ch.send(v);
        if (i == kPerProducer) {
          account(v, r);
        } else {
          account_one(v, r);
        }
      }
    });
  }
  std::thread thread_consumer([&] {
    while (auto v = ch.receive()) received_sum += *v;
  });
  for (auto& t : threads) t.join();
  thread_consumer.join();
  io_thread.join();
  CHECK(ended == stallscope::make_error_code(stallscope::ChannelErrc::kClosed));
  long long drained = 0;
  for (int v : ch.drain()) drained += v;
  // Merge sums values into queued items, so the value sum is conserved under every policy.
  CHECK(sent_sum.load() == received_sum.load() + returned_sum.load() + drained);
  check_identity(name);
}

TEST_CASE("counts of a destroyed channel stay, and objects sharing a name add up",
          "[channel][accounting]") {
  if constexpr (!STALLSCOPE_ENABLED) return;
  const std::string name = unique_name("shared-name");
  using stallscope::testing::histogram;
  auto queue_count = [&] {
    auto h = histogram("stallscope_channel_queue_seconds", {{"resource", name}});
    return h ? static_cast<double>(h->count) : -1.0;
  };
  auto a = std::make_unique<Channel<int>>(name, 4);
  Channel<int> b(name, 4);
  for (int i = 0; i < 3; ++i) REQUIRE(a->send(i).outcome == SendOutcome::kEnqueued);
  REQUIRE(a->receive() == 0);
  REQUIRE(b.send(7).outcome == SendOutcome::kEnqueued);
  REQUIRE(b.send_control(8).outcome == SendOutcome::kEnqueued);
  REQUIRE(b.receive() == 8);  // control first
  CHECK(sent(name) == 4);
  CHECK(sent(name, "control") == 1);
  CHECK(items(name, "delivered") == 1);
  CHECK(items(name, "delivered", "control") == 1);
  CHECK(queue_count() == 2);
  CHECK(value("stallscope_channel_depth", {{"resource", name}}) == 3);

  a->drain();  // 2 items
  a.reset();   // its counts fold into the series
  CHECK(sent(name) == 4);
  CHECK(items(name, "delivered") == 1);
  CHECK(items(name, "drained") == 2);
  CHECK(queue_count() == 2);
  CHECK(value("stallscope_channel_depth", {{"resource", name}}) == 1);
  REQUIRE(b.receive() == 7);
  CHECK(items(name, "delivered") == 2);
  CHECK(queue_count() == 3);
  check_identity(name);
}

TEST_CASE("close during active traffic loses nothing, many times over",
          "[channel][close][concurrency]") {
  const std::string name = unique_name("close-race");
  for (int round = 0; round < 50; ++round) {
    Channel<int> ch(name, 4);
    std::atomic<long long> sent_sum{0}, returned_sum{0}, received_sum{0};
    std::latch start(5);
    std::vector<std::thread> threads;
    for (int p = 0; p < 2; ++p) {
      threads.emplace_back([&, p] {
        start.arrive_and_wait();
        for (int i = 1;; ++i) {
          const int v = p * 1000000 + i;
          auto r = ch.send(v);
          sent_sum += v;
          if (r.item) returned_sum += *r.item;
          if (r.outcome == SendOutcome::kClosed) break;
        }
      });
    }
    for (int c = 0; c < 2; ++c) {
      threads.emplace_back([&] {
        start.arrive_and_wait();
        while (auto v = ch.receive()) received_sum += *v;
      });
    }
    start.arrive_and_wait();
    std::this_thread::yield();
    ch.close();
    for (auto& t : threads) t.join();
    long long drained = 0;
    for (int v : ch.drain()) drained += v;
    REQUIRE(sent_sum.load() == received_sum.load() + returned_sum.load() + drained);
  }
  check_identity(name);
}
