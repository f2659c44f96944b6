"""Schema history. APPEND ONLY: never edit or reorder a shipped step; each runs in one
transaction together with its record in _sqlite_migrations."""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

MIGRATIONS = Migrations("machined")


@MIGRATIONS()
def m0001_initial(db: Database) -> None:
    db.executescript("""
    CREATE TABLE config (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE profiles (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE profiles_config (
        profile_id INTEGER NOT NULL REFERENCES profiles(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (profile_id, key)
    );
    CREATE TABLE profiles_devices (
        profile_id INTEGER NOT NULL REFERENCES profiles(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        config TEXT NOT NULL,
        PRIMARY KEY (profile_id, name)
    );
    CREATE TABLE instances (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL DEFAULT 'container',
        architecture TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        ephemeral INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        last_used_at TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE instances_config (
        instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (instance_id, key)
    );
    CREATE TABLE instances_devices (
        instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        config TEXT NOT NULL,
        PRIMARY KEY (instance_id, name)
    );
    CREATE TABLE instances_profiles (
        instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
        profile_id INTEGER NOT NULL REFERENCES profiles(id) ON DELETE RESTRICT,
        apply_order INTEGER NOT NULL,
        PRIMARY KEY (instance_id, profile_id)
    );
    CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        fingerprint TEXT NOT NULL UNIQUE,
        filename TEXT NOT NULL DEFAULT '',
        size INTEGER NOT NULL,
        public INTEGER NOT NULL DEFAULT 0,
        architecture TEXT NOT NULL,
        type TEXT NOT NULL DEFAULT 'container',
        split INTEGER NOT NULL DEFAULT 0,
        auto_update INTEGER NOT NULL DEFAULT 0,
        cached INTEGER NOT NULL DEFAULT 0,
        properties TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL DEFAULT '',
        uploaded_at TEXT NOT NULL,
        last_used_at TEXT NOT NULL DEFAULT '',
        expires_at TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE images_aliases (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        description TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE operations (
        id TEXT PRIMARY KEY,
        class TEXT NOT NULL,
        description TEXT NOT NULL,
        status_code INTEGER NOT NULL,
        resources TEXT NOT NULL DEFAULT '{}',
        err TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    """)


@MIGRATIONS()
def m0002_remote_images_and_trust(db: Database) -> None:
    """Issue 4: where cached/auto-updating images came from, when each was last checked,
    and the TLS client certificates (and pending join tokens) the HTTPS API trusts."""
    db.executescript("""
    ALTER TABLE images ADD COLUMN last_update_check TEXT NOT NULL DEFAULT '';
    CREATE TABLE images_source (
        image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
        server TEXT NOT NULL,
        protocol TEXT NOT NULL,
        alias TEXT NOT NULL DEFAULT '',
        certificate TEXT NOT NULL DEFAULT '',
        image_type TEXT NOT NULL DEFAULT 'container'
    );
    CREATE TABLE certificates (
        fingerprint TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        type TEXT NOT NULL DEFAULT 'client',
        certificate TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE trust_tokens (
        secret_sha256 TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    """)


@MIGRATIONS()
def m0003_storage_pools_and_snapshots(db: Database) -> None:
    """Issue 5: storage pools; each instance records its pool and the name of its volume
    there (volumes are named once and never renamed: the DB row is the commit point that
    says which volume is live); snapshots are full copies with the config they had."""
    db.executescript("""
    CREATE TABLE storage_pools (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        driver TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL DEFAULT ''
    );
    ALTER TABLE instances ADD COLUMN storage_pool TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE instances ADD COLUMN volume TEXT NOT NULL DEFAULT '';
    UPDATE instances SET volume = name;
    CREATE TABLE instances_snapshots (
        id INTEGER PRIMARY KEY,
        instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        volume TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL DEFAULT '',
        stateful INTEGER NOT NULL DEFAULT 0,
        description TEXT NOT NULL DEFAULT '',
        architecture TEXT NOT NULL,
        ephemeral INTEGER NOT NULL DEFAULT 0,
        config TEXT NOT NULL DEFAULT '{}',
        devices TEXT NOT NULL DEFAULT '{}',
        profiles TEXT NOT NULL DEFAULT '[]',
        UNIQUE (instance_id, name)
    );
    """)


@MIGRATIONS()
def m0004_networks(db: Database) -> None:
    """Issue 6: managed networks (bridges with DHCP/DNS by dnsmasq, optional NAT)."""
    db.executescript("""
    CREATE TABLE networks (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL DEFAULT 'bridge',
        description TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL DEFAULT ''
    );
    """)


@MIGRATIONS()
def m0005_warnings(db: Database) -> None:
    """Issue 7: warnings (LXD's /1.0/warnings), e.g. an instance that failed to autostart."""
    db.executescript("""
    CREATE TABLE warnings (
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        entity_url TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'new',
        severity TEXT NOT NULL DEFAULT 'low',
        count INTEGER NOT NULL DEFAULT 1,
        first_seen_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,
        last_message TEXT NOT NULL DEFAULT '',
        UNIQUE (type, entity_url)
    );
    """)
