import { constants } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';

/** fsync a file by path. */
export async function fsyncFile(path: string): Promise<void> {
  const handle = await open(path, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** fsync a directory so a rename or unlink inside it survives power loss. */
export async function fsyncDirectory(path: string): Promise<void> {
  const handle = await open(path, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes a small file so that after a crash it holds either the old or the new content, whole. */
export async function writeFileAtomic(path: string, data: string | Uint8Array, tempSuffix: string): Promise<void> {
  const temp = `${path}.tmp-${tempSuffix}`;
  const handle = await open(temp, 'w', 0o644);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (error) {
    await handle.close().catch(() => {});
    await unlink(temp).catch(() => {});
    throw error;
  }
  await handle.close();
  await rename(temp, path);
}
