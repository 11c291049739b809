// One tus-js-client upload in Node, driven by tests/test_tus_js_client.py.
//
//   node tus_upload.mjs '<json options>'     (the token comes in TUS_TOKEN)
//
// options: endpoint, file, chunkSize, parallel (parallelUploads), buffer (read the
// file into a Buffer: parallelUploads slices it), urlStorage (a FileUrlStorage
// path, so that another process can find the upload again), abortAt (abort once
// this fraction is sent), resume (continue the upload found in urlStorage).
// Prints one JSON line: {event: "success" | "aborted" | "error", url, requests, ...}.
import { createReadStream, readFileSync } from 'node:fs'
import { basename } from 'node:path'
import { FileUrlStorage, Upload } from 'tus-js-client'

const opts = JSON.parse(process.argv[2])
const requests = []
const emit = (result) => {
  process.stdout.write(`${JSON.stringify({ ...result, requests })}\n`)
}

// A Buffer when slicing is needed; otherwise a file stream (tus-js-client reads
// an fs.ReadStream's path, so it knows the size and can fingerprint the file).
const input = opts.buffer ? readFileSync(opts.file) : createReadStream(opts.file)
const options = {
  endpoint: opts.endpoint,
  headers: { Authorization: `Bearer ${process.env.TUS_TOKEN}` },
  chunkSize: opts.chunkSize ?? Number.POSITIVE_INFINITY,
  parallelUploads: opts.parallel ?? 1,
  metadata: { filename: basename(opts.file), filetype: 'application/octet-stream' },
  retryDelays: [0, 300, 1000, 2000],
  storeFingerprintForResuming: true,
  removeFingerprintOnSuccess: false,
  onBeforeRequest(req) {
    requests.push({
      method: req.getMethod(),
      url: req.getURL(),
      offset: req.getHeader('Upload-Offset') ?? null,
      concat: req.getHeader('Upload-Concat') ?? null,
    })
  },
  onError(error) {
    emit({ event: 'error', message: String(error) })
    process.exit(1)
  },
}
if (opts.urlStorage) options.urlStorage = new FileUrlStorage(opts.urlStorage)

let aborted = false
const upload = new Upload(input, {
  ...options,
  onProgress(sent, total) {
    if (opts.abortAt && !aborted && sent >= total * opts.abortAt) {
      aborted = true
      // abort() breaks the PATCH in flight: the server keeps what it got so far.
      upload.abort(false).then(() => {
        emit({ event: 'aborted', url: upload.url, sent, total })
        process.exit(0)
      })
    }
  },
  onSuccess() {
    emit({ event: 'success', url: upload.url })
  },
})

if (opts.resume) {
  const previous = await upload.findPreviousUploads()
  if (previous.length === 0) {
    emit({ event: 'error', message: 'no previous upload in the URL storage' })
    process.exit(1)
  }
  upload.resumeFromPreviousUpload(previous[0])
  emit({ event: 'found', url: previous[0].uploadUrl })
}
upload.start()
