-- OrderItem: a change of an order's items locks the order row, and is refused once the order's payment took the
-- stock of its items.
--
-- The shop's own code writes "OrderItem" (a size swap before paying, an item removed). An UPDATE or DELETE of an item
-- took no lock on the order (an INSERT only FOR KEY SHARE, the foreign key's), so it did not wait for a payment in
-- progress, nor a payment for it: a swap RED → BLUE not yet committed when wpn_apply_payments locked the order and read
-- the items was invisible to it, the payment took RED's stock and recorded RED's movement, and the swap then committed
-- on the paid order — the order sold BLUE, RED's stock was taken. Only a shop that locked the order row itself before
-- changing items (a convention, documented) was serialised with payments.
--
-- Now the trigger below does it for every writer, before the row is written:
-- - It locks the item's order FOR NO KEY UPDATE (on an UPDATE that moves the item, both orders, in id order as the
--   payment and refund statements lock orders). That conflicts with the FOR UPDATE the payment and refund statements
--   take on the order, so an item change waits for a payment in progress and a payment waits for an item change not
--   committed yet (its later reads, each with a snapshot of its own, then see the committed items). It is the lock an
--   UPDATE of the order row takes, so a transaction that changes items and then the order (its total) upgrades
--   nothing; one that locked the order FOR SHARE first does upgrade, and two of them on one order deadlock (40P01):
--   lock the order FOR NO KEY UPDATE or FOR UPDATE first, or not at all. The lock order stays Notification → Order →
--   Sku: an item change takes the order's lock, then the foreign key takes FOR KEY SHARE on the SKU, which the
--   payment's FOR NO KEY UPDATE on SKUs does not conflict with.
-- - Then, in a statement of its own (its snapshot taken after the wait, so it holds what the payment committed), it
--   refuses the change when a locked order has a PAYMENT inventory movement: SQLSTATE 23000, constraint
--   "OrderItem_stock_taken". The items are then the record of what was sold, and the PAYMENT movements of what was
--   taken for it (a refund restocks from those); a change would set the two apart. An order whose payment took no
--   stock (NOTPAY, CLOSED, PAYMENT_REVIEW with OUT_OF_STOCK or a mismatch, paid orders inserted by an import before
--   any movement) keeps changeable items. An order deleted whole still deletes its items: its row is gone when ON
--   DELETE CASCADE deletes them, so nothing is locked or refused.
-- The trigger fires on INSERT, DELETE and an UPDATE that sets "orderId", "skuId" or quantity (what the payment reads):
-- a migration filling a new column is not refused.
--
-- SECURITY INVOKER, as the project's other functions: the role changing items needs UPDATE on "Order" (the row lock;
-- a shop that closes orders has it) and SELECT on "InventoryMovement". PostgreSQL checks EXECUTE on a trigger
-- function only when the trigger is created, so no grant is copied from wpn_apply_payments.
CREATE FUNCTION wpn_order_item_lock()
RETURNS trigger
LANGUAGE plpgsql
AS $wpn$
DECLARE
  -- The orders whose items change: one, or two for an UPDATE moving an item to another order (second_id null).
  first_id text;
  second_id text;
  -- Those of them locked, and the first whose payment took stock.
  locked text[];
  sold text;
BEGIN
  IF TG_OP = 'INSERT' THEN
    first_id := NEW."orderId";
  ELSIF TG_OP = 'DELETE' THEN
    first_id := OLD."orderId";
  ELSE
    first_id := least(OLD."orderId", NEW."orderId");
    second_id := NULLIF(greatest(OLD."orderId", NEW."orderId"), first_id);
  END IF;
  -- The rows this transaction sees: not an order it deleted (ON DELETE CASCADE deletes the items after the order
  -- row), nor one not committed yet (the foreign key's check waits for that one).
  SELECT array_agg(l.id) INTO locked FROM (
    SELECT id FROM "Order" WHERE id IN (first_id, second_id) ORDER BY id FOR NO KEY UPDATE
  ) l;
  SELECT m."orderId" INTO sold FROM "InventoryMovement" m
    WHERE m."orderId" = ANY (locked) AND m.reason = 'PAYMENT'
    ORDER BY m."orderId" LIMIT 1;
  IF sold IS NOT NULL THEN
    RAISE EXCEPTION 'items of order % are sold: its payment took their stock, and they no longer change', sold
      USING ERRCODE = 'integrity_constraint_violation', CONSTRAINT = 'OrderItem_stock_taken',
            SCHEMA = TG_TABLE_SCHEMA, TABLE = TG_TABLE_NAME,
            HINT = 'Refund the order, or sell the other items on an order of their own.';
  END IF;
  IF TG_OP = 'DELETE' THEN
    RETURN OLD;
  END IF;
  RETURN NEW;
END
$wpn$;

CREATE TRIGGER "OrderItem_order_lock"
  BEFORE INSERT OR DELETE OR UPDATE OF "orderId", "skuId", quantity ON "OrderItem"
  FOR EACH ROW EXECUTE FUNCTION wpn_order_item_lock();
