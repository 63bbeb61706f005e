-- +goose Up

-- Which careteamd may serve the schema at each version: one whose
-- migrations reach serves_from at least. The careteamd that migrates to a
-- version records it (see postgres.Migrate): in the main, the version the
-- database was at before, so that the release that served it until then
-- may go on. A careteamd that knows less refuses to start.
CREATE TABLE schema_compatibility (
    version bigint PRIMARY KEY,
    serves_from bigint NOT NULL CHECK (serves_from <= version)
);

-- +goose Down
-- Forward-only: released migrations are never reversed.
