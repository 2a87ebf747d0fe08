// RangeSet arithmetic and the Bookkeeper: gaps, partials with buffered rows,
// cleared versions, persistence across a reopen, and the consistency check.
#include <gtest/gtest.h>

#include "crdt/bookkeeping.hpp"
#include "test_db.hpp"

namespace patina::crdt {
namespace {

using testing::site_of;

std::string str(const RangeSet& s) {
  std::string out;
  for (const auto& r : s.ranges()) {
    out += '[';
    out += std::to_string(r.start);
    out += ',';
    out += std::to_string(r.end);
    out += ']';
  }
  return out;
}

TEST(RangeSet, InsertMergesTouchingAndRemoveSplits) {
  RangeSet s;
  s.insert(Range{1, 2});
  s.insert(Range{3, 4});
  s.insert(Range{7, 9});
  EXPECT_EQ(str(s), "[1,4][7,9]");
  s.insert(Range{5, 6});
  EXPECT_EQ(str(s), "[1,9]");
  s.remove(Range{3, 5});
  EXPECT_EQ(str(s), "[1,2][6,9]");
  EXPECT_TRUE(s.contains(Range{6, 9}));
  EXPECT_FALSE(s.contains(Range{2, 6}));
  EXPECT_EQ(str(s.gaps(Range{0, 10})), "[0,0][3,5][10,10]");
  EXPECT_EQ(str(s.intersect(Range{2, 7})), "[2,2][6,7]");
  EXPECT_EQ(s.count(), 6);
  s.remove(Range{0, 100});
  EXPECT_TRUE(s.empty());
}

Change row(SiteId site, std::int64_t version, std::int64_t seq) {
  Change c;
  c.table = "t";
  c.pk = PackedPk::pack(std::vector<Value>{seq});
  c.cid = "a";
  c.val = std::to_string(seq);
  c.col_version = 1;
  c.db_version = version;
  c.site_id = site;
  c.cl = 1;
  c.seq = seq;
  return c;
}

// A new, empty database file; the caller closes it.
sqlite3* fresh_db(const std::string& name) {
  std::string path = testing::temp_path(name);
  std::remove(path.c_str());
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  return db;
}

TEST(Bookkeeper, ReconcilingGapsCollapsesTheirRowsAndTakesThemAsTheTruth) {
  sqlite3* db = fresh_db("gaps.db");
  {  // the Bookkeeper's prepared statements go before the connection closes
    const SiteId a = site_of(0xaa), b = site_of(0xbb);
    auto books = Bookkeeper::open(db);
    ASSERT_TRUE(books) << books.error().message;
    ASSERT_TRUE(books->record_applied(a, Range{1, 1}));
    ASSERT_TRUE(books->record_applied(a, Range{20, 20}));  // gap 2..19
    ASSERT_TRUE(books->record_applied(b, Range{1, 5}));
    // Rows already minimal and in agreement: nothing to do.
    auto same = books->collapse_gaps(a);
    ASSERT_TRUE(same) << same.error().message;
    EXPECT_EQ(same->deleted, 0u);
    EXPECT_EQ(same->inserted, 0u);
    // Gap rows as an older writer could leave them: split and overlapping.
    char* err = nullptr;
    ASSERT_EQ(sqlite3_exec(db,
                           "DELETE FROM __patina_bookkeeping_gaps;"
                           "INSERT INTO __patina_bookkeeping_gaps VALUES (x'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 2, 9),"
                           " (x'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 10, 12),"
                           " (x'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 12, 19);",
                           nullptr, nullptr, &err),
              SQLITE_OK)
        << err;
    auto actors = books->actors_with_gaps();
    ASSERT_TRUE(actors);
    ASSERT_EQ(actors->size(), 1u);
    EXPECT_EQ(actors->front(), a);
    auto fixed = books->collapse_gaps(a);
    ASSERT_TRUE(fixed) << fixed.error().message;
    EXPECT_EQ(fixed->deleted, 3u);
    EXPECT_EQ(fixed->inserted, 1u);
    EXPECT_EQ(str(books->actor(a)->needed), "[2,19]");
    ASSERT_TRUE(books->check()) << books->check().error().message;
    // The database is the durable record: memory takes its gaps (here, none left).
    ASSERT_EQ(sqlite3_exec(db, "DELETE FROM __patina_bookkeeping_gaps", nullptr, nullptr, &err), SQLITE_OK) << err;
    EXPECT_FALSE(books->check());
    auto emptied = books->collapse_gaps(a);
    ASSERT_TRUE(emptied);
    EXPECT_TRUE(books->actor(a)->needed.empty());
    ASSERT_TRUE(books->check()) << books->check().error().message;
  }
  sqlite3_close(db);
  std::remove(testing::temp_path("gaps.db").c_str());
}

TEST(Bookkeeper, GapsPartialsClearedSurviveReopen) {
  sqlite3* db = fresh_db("books.db");
  const SiteId a = site_of(0xaa), b = site_of(0xbb);
  {
    auto books = Bookkeeper::open(db);
    ASSERT_TRUE(books) << books.error().message;
    ASSERT_TRUE(books->record_applied(a, Range{1, 3}));
    ASSERT_TRUE(books->record_applied(a, Range{7, 7}));  // 4..6 become a gap
    EXPECT_EQ(books->actor(a)->max, 7);
    EXPECT_EQ(str(books->actor(a)->needed), "[4,6]");
    ASSERT_TRUE(books->record_cleared(a, Range{5, 5}));
    EXPECT_EQ(str(books->actor(a)->needed), "[4,4][6,6]");
    EXPECT_TRUE(books->contains_version(a, 5));
    EXPECT_FALSE(books->contains_version(a, 4));

    std::vector<Change> first = {row(b, 2, 0), row(b, 2, 1)};
    auto done = books->record_partial(b, 2, Range{0, 1}, 3, 77, first);
    ASSERT_TRUE(done) << done.error().message;
    EXPECT_FALSE(*done);
    EXPECT_EQ(str(books->actor(b)->needed), "[1,1]");
    EXPECT_FALSE(books->contains_version(b, 2));
    EXPECT_TRUE(books->contains(b, 2, Range{0, 1}));
    EXPECT_FALSE(books->contains(b, 2, Range{0, 2}));
    ASSERT_TRUE(books->check()) << books->check().error().message;
  }
  // Reopen: everything is still there.
  {
    auto books = Bookkeeper::open(db);
    ASSERT_TRUE(books);
    EXPECT_EQ(str(books->actor(a)->needed), "[4,4][6,6]");
    EXPECT_EQ(str(books->actor(a)->cleared), "[5,5]");
    ASSERT_EQ(books->actor(b)->partials.size(), 1u);
    EXPECT_EQ(books->actor(b)->partials.at(2).last_seq, 3);
    EXPECT_EQ(books->actor(b)->partials.at(2).ts, 77u);
    std::vector<Change> rest = {row(b, 2, 2), row(b, 2, 3), row(b, 2, 1) /* duplicate */};
    auto done = books->record_partial(b, 2, Range{1, 3}, 3, 77, rest);
    ASSERT_TRUE(done) << done.error().message;
    EXPECT_TRUE(*done);
    auto rows = books->buffered(b, 2);
    ASSERT_TRUE(rows);
    ASSERT_EQ(rows->size(), 4u);
    for (std::int64_t i = 0; i < 4; ++i) EXPECT_EQ((*rows)[static_cast<std::size_t>(i)], row(b, 2, i));
    ASSERT_TRUE(books->record_applied(b, Range{2, 2}));
    EXPECT_TRUE(books->actor(b)->partials.empty());
    EXPECT_TRUE(books->buffered(b, 2)->empty());
    EXPECT_TRUE(books->contains_version(b, 2));
    ASSERT_TRUE(books->check());

    // Tampering with the database is caught by the consistency check.
    char* err = nullptr;
    sqlite3_exec(db, "UPDATE __patina_bookkeeping_heads SET max = 99", nullptr, nullptr, &err);
    sqlite3_free(err);
    auto c = books->check();
    ASSERT_FALSE(c);
    EXPECT_NE(c.error().message.find("max"), std::string::npos) << c.error().message;
    ASSERT_TRUE(books->reload());
    EXPECT_TRUE(books->check());
  }
  sqlite3_close(db);
  std::remove(testing::temp_path("books.db").c_str());
}

}  // namespace
}  // namespace patina::crdt
