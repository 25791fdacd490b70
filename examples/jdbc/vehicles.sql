-- The fleet's vehicles: one row per vehicle, stamped whenever it changes.
-- psql "$KANAL_POSTGRES_URL" -f examples/jdbc/vehicles.sql
CREATE TABLE IF NOT EXISTS vehicles (
    id              SERIAL PRIMARY KEY,
    vehicle_id      VARCHAR(16) NOT NULL UNIQUE,
    model           VARCHAR(40),
    fleet           VARCHAR(40),
    fuel_capacity_l NUMERIC(5, 1),
    updated_at      TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
INSERT INTO vehicles (vehicle_id, model, fleet, fuel_capacity_l) VALUES
    ('VH-0001', 'Actros 1845', 'north', 390.0),
    ('VH-0002', 'FH16 750', 'north', 480.0),
    ('VH-0003', 'eActros 600', 'city', NULL)
ON CONFLICT (vehicle_id) DO NOTHING;
