-- An order partly filled by a window stays open: the rest goes to the next window as a new
-- intent (part 2, 3, ...), until it fills, is too small to trade, or is rejected or cancelled.
--
-- final:         the order reached its one final state and never changes again (the status
--                alone does not say it: partially_executed is open while a rest is carried)
-- intent_id:     the order's current intent at the window (part 1's id is the order id; a
--                later part's derives from the order id and the part number); every event of
--                the window or the ledger finds its order by this id
-- part:          the number of the current intent
-- rest_amount,
-- rest_quantity: what the current intent asks (the order's amount or quantity for part 1, the
--                rest for a later part)
ALTER TABLE orders
    ADD COLUMN final         boolean NOT NULL DEFAULT false,
    ADD COLUMN intent_id     uuid,
    ADD COLUMN part          integer NOT NULL DEFAULT 1 CHECK (part >= 1),
    ADD COLUMN rest_amount   numeric(16, 2) CHECK (rest_amount > 0),
    ADD COLUMN rest_quantity numeric(20, 5) CHECK (rest_quantity > 0);

UPDATE orders SET final = status NOT IN ('pending', 'carried_over'), intent_id = order_id,
                  rest_amount = amount, rest_quantity = quantity;

ALTER TABLE orders ALTER COLUMN intent_id SET NOT NULL;
ALTER TABLE orders ADD CHECK ((rest_amount IS NULL) <> (rest_quantity IS NULL));
ALTER TABLE orders ADD CHECK ((amount IS NULL) = (rest_amount IS NULL));
CREATE UNIQUE INDEX orders_intent ON orders (intent_id);
CREATE INDEX orders_open ON orders (account_id) WHERE NOT final;
