-- AlterTable
ALTER TABLE "Merchant" ADD COLUMN     "apiV3KeyPrevious" TEXT;
