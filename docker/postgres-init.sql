-- Runs once, when the postgres container initialises its volume: a database for the relay and
-- the example services, next to ferry_test (the test suite's).
CREATE DATABASE ferry OWNER ferry;
