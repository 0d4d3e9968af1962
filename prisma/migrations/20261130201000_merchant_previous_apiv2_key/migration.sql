-- AlterTable
ALTER TABLE "Merchant" ADD COLUMN     "apiV2KeyPrevious" TEXT;
