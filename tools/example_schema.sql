-- Patina's example schema: what a hosting platform's workers publish about
-- the machines they run, and what edge proxies route by.

CREATE TABLE machines (
    id TEXT NOT NULL PRIMARY KEY,
    app TEXT NOT NULL DEFAULT '',
    region TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL DEFAULT 'created',
    address TEXT,
    cpus INTEGER NOT NULL DEFAULT 1,
    memory_mb INTEGER NOT NULL DEFAULT 256,
    updated_at INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX machines_by_app ON machines (app, region);

CREATE TABLE services (
    app TEXT NOT NULL,
    name TEXT NOT NULL,
    port INTEGER NOT NULL DEFAULT 0,
    protocol TEXT NOT NULL DEFAULT 'tcp',
    healthy INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (app, name)
);
