// Decodes DRAW_COPY message bodies with spice-html5's own parsers and
// decoders (spicedataview.js, spicetype.js, quic.js, lz.js), as its display.js does, and
// writes the picture as RGBA. Used by the codec tests; run from a
// directory holding a copy of those spice-html5 modules.
//   node html5_decode.mjs BODY...   → writes BODY.rgba for each
import { readFileSync, writeFileSync } from 'fs';
import { SpiceCopy } from './spicetype.js';
import { SpiceDataView } from './spicedataview.js';
import { Constants } from './enums.js';
import * as Quic from './quic.js';
import { convert_spice_lz_to_web } from './lz.js';

const context = {
  createImageData(width, height) {
    return { width, height, data: new Uint8ClampedArray(width * height * 4) };
  },
};

for (const path of process.argv.slice(2)) {
  const bytes = readFileSync(path);
  const mb = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
  const dv = new SpiceDataView(mb);
  // DisplayBase: surface id, box, clip type (NONE).
  if (dv.getUint8(20) !== Constants.SPICE_CLIP_TYPE_NONE) throw new Error('clip');
  const copy = new SpiceCopy();
  copy.from_dv(dv, 21, mb);
  const img = copy.src_bitmap;
  let out;
  switch (img.descriptor.type) {
    case Constants.SPICE_IMAGE_TYPE_QUIC:
      if (!img.quic || !img.quic.outptr) throw new Error('quic decode failed');
      out = Quic.convert_spice_quic_to_web(context, img.quic);
      break;
    case Constants.SPICE_IMAGE_TYPE_LZ_RGB:
      out = convert_spice_lz_to_web(context, img.lz_rgb);
      if (!out) throw new Error('lz type not supported');
      break;
    case Constants.SPICE_IMAGE_TYPE_BITMAP: {
      const b = img.bitmap;
      const src = new Uint8Array(b.data);
      out = context.createImageData(b.x, b.y);
      for (let i = 0; i < b.x * b.y; i++) {
        out.data[i * 4] = src[i * 4 + 2];
        out.data[i * 4 + 1] = src[i * 4 + 1];
        out.data[i * 4 + 2] = src[i * 4];
        out.data[i * 4 + 3] = 255;
      }
      break;
    }
    default:
      throw new Error('image type ' + img.descriptor.type);
  }
  if (out.width !== img.descriptor.width || out.height !== img.descriptor.height)
    throw new Error('size mismatch');
  writeFileSync(path + '.rgba', Buffer.from(out.data.buffer));
}
