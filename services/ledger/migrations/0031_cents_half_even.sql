-- Rounding to the cent, half to even, as shared/money.py ``cents`` does: the SQL closing of
-- tax lots (services/ledger/fills_store.py ``close_single_sales``) must give the cents the
-- Python reference gives. PostgreSQL's round() rounds half away from zero.
CREATE FUNCTION cents_half_even(v numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT (sign(v) * CASE WHEN abs(v) * 100 - trunc(abs(v) * 100) = 0.5
                           THEN (trunc(abs(v) * 100) + mod(trunc(abs(v) * 100), 2)) / 100
                           ELSE round(abs(v), 2) END)::numeric(30, 2)
$$;
