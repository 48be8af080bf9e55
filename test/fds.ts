/** Descriptor checks shared by the tests of the file-sharing modules (src/http). */
import fs from 'node:fs';

/** Whether `fd` is an open descriptor of this process. */
export function isOpen(fd: number): boolean {
  try {
    fs.fstatSync(fd);
    return true;
  } catch {
    return false;
  }
}

/** Closing is asynchronous (libuv's thread pool): wait for it, briefly. */
export async function waitClosed(fd: number): Promise<boolean> {
  for (let i = 0; i < 200 && isOpen(fd); i++) await new Promise((resolve) => setTimeout(resolve, 5));
  return !isOpen(fd);
}
