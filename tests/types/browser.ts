// The browser-only sources of tidelog.Image: a canvas, an OffscreenCanvas and an ImageData.
import * as tidelog from "tidelog";

export function browserImages(canvas: HTMLCanvasElement, offscreen: OffscreenCanvas, data: ImageData): void {
  tidelog.log({ a: tidelog.Image(canvas), b: tidelog.Image(offscreen, { caption: "offscreen" }), c: tidelog.Image(data) });
}
