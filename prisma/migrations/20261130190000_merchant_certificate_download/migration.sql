-- AlterTable
ALTER TABLE "Merchant" ADD COLUMN     "apiPrivateKeyPem" TEXT,
ADD COLUMN     "apiSerialNo" TEXT;
