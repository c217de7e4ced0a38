#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "cells_alloc.hpp"
#include "stallscope/buckets.hpp"
#include "stallscope/detail/histogram.hpp"

using stallscope::Buckets;
using stallscope::detail::BucketLayout;
using stallscope::detail::HistogramCells;

namespace {

HistogramCells make_histogram(const BucketLayout& layout) {
  HistogramCells h;
  h.layout = &layout;
  h.base = stallscope::detail::cell_allocator().allocate(layout.cells());
  REQUIRE(h.base != stallscope::detail::kNoCell);
  return h;
}

// The bucket a value belongs in, by definition: the first bound >= value.
std::uint32_t reference_index(const Buckets& b, std::int64_t ns) {
  const double s = static_cast<double>(ns) * 1e-9;
  const auto bounds = b.bounds();
  std::uint32_t i = 0;
  while (i < bounds.size() && std::floor(bounds[i] * 1e9) < static_cast<double>(ns)) ++i;
  (void)s;
  return i;
}

}  // namespace

TEST_CASE("bucket bounds are validated and errors name the bad value", "[buckets]") {
  CHECK_THROWS_WITH(Buckets({}), Catch::Contains("must not be empty"));
  CHECK_THROWS_WITH(Buckets({0.001, 0.0005}), Catch::Contains("0.0005"));
  CHECK_THROWS_WITH(Buckets({0.001, 0.001}), Catch::Contains("0.001"));
  CHECK_THROWS_WITH(Buckets({-1.0}), Catch::Contains("-1"));
  CHECK_THROWS_WITH(Buckets({std::numeric_limits<double>::quiet_NaN()}), Catch::Contains("nan"));
  CHECK_THROWS_WITH(Buckets({1e-12}), Catch::Contains("1e-12"));
  CHECK_THROWS_WITH(Buckets({1.0, std::numeric_limits<double>::infinity()}),
                    Catch::Contains("inf"));
  // Distinct as doubles but equal to the nanosecond.
  CHECK_THROWS_WITH(Buckets({1e-6, 1.0000000001e-6}), Catch::Contains("1.0000000001e-06"));
  std::vector<double> many(Buckets::kMaxBounds + 1);
  for (std::size_t i = 0; i < many.size(); ++i) many[i] = static_cast<double>(i + 1) * 1e-3;
  CHECK_THROWS_AS(Buckets(std::span<const double>(many)), std::invalid_argument);
  CHECK_NOTHROW(Buckets({1e-9, 1.0, 3600.0}));
}

TEST_CASE("the default latency buckets span a microsecond to tens of seconds", "[buckets]") {
  const Buckets b = Buckets::latency();
  REQUIRE(b.size() >= 20);
  CHECK(b.bounds().front() == 1e-6);
  CHECK(b.bounds().back() >= 10.0);
  CHECK(std::is_sorted(b.bounds().begin(), b.bounds().end()));
}

TEST_CASE("bucket lookup matches the definition at every bound and between them", "[histogram]") {
  for (const Buckets& b : {Buckets::latency(), Buckets({1e-9, 2e-9, 3e-9, 1e-3}),
                           Buckets({0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 3600.0})}) {
    const BucketLayout layout(b);
    std::vector<std::int64_t> probes = {0, 1, 2, 3, 4, std::numeric_limits<std::int64_t>::max()};
    for (double bound : b.bounds()) {
      const auto ns = static_cast<std::int64_t>(std::floor(bound * 1e9));
      probes.insert(probes.end(), {ns - 1, ns, ns + 1});
    }
    std::mt19937_64 rng(42);
    for (int i = 0; i < 20000; ++i) {
      probes.push_back(static_cast<std::int64_t>(rng() >> static_cast<unsigned>(1 + rng() % 63)));
    }
    for (std::int64_t ns : probes) {
      if (ns < 0) continue;
      INFO("value " << ns << " ns");
      REQUIRE(layout.index(ns) == reference_index(b, ns));
    }
  }
}

TEST_CASE("histogram counts and sums are exact under concurrency", "[histogram][concurrency]") {
  const BucketLayout layout(Buckets::latency());
  const HistogramCells h = make_histogram(layout);
  constexpr int kThreads = 4;
  constexpr int kRecords = 50000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRecords; ++i) h.record(1000 * (t + 1));  // 1, 2, 3, 4 us
    });
  }
  for (auto& th : threads) th.join();
  const auto d = stallscope::detail::read(h);
  CHECK(d.count == std::uint64_t{kThreads} * kRecords);
  CHECK(d.sum == Approx(kRecords * (1 + 2 + 3 + 4) * 1e-6));
  CHECK(d.counts[0] == kRecords);      // 1 us bucket
  CHECK(d.counts[1] == kRecords);      // 2 us <= 2.5 us
  CHECK(d.counts[2] == 2 * kRecords);  // 3 us and 4 us <= 5 us
}

TEST_CASE("counts recorded by exited threads are kept and shards are reused",
          "[histogram][concurrency]") {
  const BucketLayout layout(Buckets::latency());
  const HistogramCells h = make_histogram(layout);
  for (int round = 0; round < 20; ++round) {
    std::thread([&] {
      for (int i = 0; i < 100; ++i) h.record(5);
    }).join();
  }
  const auto d = stallscope::detail::read(h);
  CHECK(d.count == 2000);
  CHECK(d.sum == Approx(2000 * 5e-9));
  // 20 sequential threads reuse shards instead of allocating one each.
  CHECK(stallscope::detail::shard_stats().shards < 20);
}

TEST_CASE("negative durations count as zero", "[histogram]") {
  const BucketLayout layout(Buckets::latency());
  const HistogramCells h = make_histogram(layout);
  h.record(-5);
  const auto d = stallscope::detail::read(h);
  CHECK(d.counts[0] == 1);
  CHECK(d.sum == 0.0);
}
