-- The table exactly as the Go/gorm version created it, so an existing
-- database is adopted unchanged and a new one looks the same.
CREATE TABLE IF NOT EXISTS "books" (
    "id" bigserial,
    "created_at" timestamptz,
    "updated_at" timestamptz,
    "deleted_at" timestamptz,
    "title" text,
    "author" text,
    "year" bigint,
    PRIMARY KEY ("id")
);
CREATE INDEX IF NOT EXISTS "idx_books_deleted_at" ON "books" ("deleted_at");
