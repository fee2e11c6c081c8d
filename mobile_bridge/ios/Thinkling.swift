// Thinkling.swift: the Swift face of thinkling's mobile_bridge over an embedded
// CPython (Python.xcframework from BeeWare's Python-Apple-support, or CPython's
// own iOS build, 3.13+).
//
// Copy this file into your app; expose Python's C API through a bridging header
// containing `#include <Python/Python.h>` (the path depends on how the
// xcframework is packaged). NOT COMPILED in thinkling's CI: the Python side it
// calls is tested under CPython on Linux; this wrapper must be built and run on
// a device.
//
// Every method returns the bridge's JSON reply (a String); bridge errors are
// {"v":1,"error":{"code","message"}}, never exceptions. loadModel and complete
// block for seconds: call them off the main thread. Python callbacks from Swift
// need C function pointers, so this wrapper streams by poll(waitMs:) instead.

import Foundation

public final class Thinkling {
    private let module: UnsafeMutablePointer<PyObject>

    /// Start the interpreter once per process and import thinkling.mobile_bridge.
    /// - pythonHome: the stdlib inside the app bundle (e.g. Bundle.main.path(forResource: "python", ofType: nil)).
    /// - pythonPath: folders holding thinkling's runtime/ and mobile_bridge/ and the site-packages
    ///   with numpy, gguf and llama_cpp (whose libllama must be embedded as a framework).
    /// - home: where models and caches live (Application Support, excluded from backup).
    public init(pythonHome: String, pythonPath: [String], home: URL) throws {
        if Py_IsInitialized() == 0 {
            setenv("PYTHONHOME", pythonHome, 1)
            setenv("PYTHONPATH", pythonPath.joined(separator: ":"), 1)
            setenv("PYTHONDONTWRITEBYTECODE", "1", 1)  // the app bundle is read-only
            setenv("THINKLING_HOME", home.path, 1)
            Py_Initialize()
            PyEval_SaveThread()  // release the GIL: the engine and pump threads need it
        }
        let gil = PyGILState_Ensure()
        defer { PyGILState_Release(gil) }
        guard let m = PyImport_ImportModule("thinkling.mobile_bridge") else {
            PyErr_Print()
            throw NSError(domain: "Thinkling", code: 1,
                          userInfo: [NSLocalizedDescriptionKey: "cannot import thinkling.mobile_bridge (see the log)"])
        }
        module = m
    }

    public func info() -> String { call("info") }
    public func listModels() -> String { call("list_models") }
    /// e.g. {"model": "<path to .gguf>", "threads": Thinkling.performanceCores(), "n_ctx": 2048}
    public func loadModel(_ json: String = "{}") -> String { call("load_model", .text(json)) }
    public func unloadModel() -> String { call("unload_model") }
    /// The HTTP chat body: messages, max_tokens, temperature, stop, think, reasoning_budget, deadline_ms.
    public func generate(_ json: String) -> String { call("generate", .text(json)) }
    public func poll(_ requestId: String, waitMs: Int = 0) -> String { call("poll", .text(requestId), .int(waitMs)) }
    public func cancel(_ requestId: String) -> String { call("cancel", .text(requestId)) }
    public func complete(_ json: String) -> String { call("complete", .text(json)) }
    public func shutdown() -> String { call("shutdown") }
    /// Wire to UIApplication.didReceiveMemoryWarningNotification: unloads the model;
    /// a later generate answers not_loaded until loadModel is called again.
    public func memoryWarning() -> String { call("memory_pressure", .text("{\"level\": \"critical\"}")) }

    /// Generate and deliver each event (a JSON object string) on `queue` until the terminal one.
    public func stream(_ json: String, queue: DispatchQueue = .main, onEvent: @escaping (String) -> Void) {
        DispatchQueue.global(qos: .userInitiated).async { [self] in
            let reply = generate(json)
            guard let id = Self.field(reply, "request_id") as? String else {
                queue.async { onEvent(reply) }  // the error reply itself
                return
            }
            while true {
                let batch = poll(id, waitMs: 1000)
                guard let events = Self.field(batch, "events") as? [[String: Any]] else {
                    queue.async { onEvent(batch) }
                    return
                }
                for event in events {
                    let data = (try? JSONSerialization.data(withJSONObject: event)) ?? Data()
                    let text = String(decoding: data, as: UTF8.self)
                    queue.async { onEvent(text) }
                    if let type = event["type"] as? String, ["done", "error", "cancelled"].contains(type) {
                        return
                    }
                }
            }
        }
    }

    /// Performance ("big") cores: pass as "threads" to loadModel.
    public static func performanceCores() -> Int {
        var n: Int32 = 0
        var size = MemoryLayout<Int32>.size
        if sysctlbyname("hw.perflevel0.physicalcpu", &n, &size, nil, 0) == 0, n > 0 { return Int(n) }
        return max(1, ProcessInfo.processInfo.activeProcessorCount / 2)
    }

    // MARK: - calling Python

    private enum Arg { case text(String), int(Int) }

    private func call(_ name: String, _ args: Arg...) -> String {
        let gil = PyGILState_Ensure()
        defer { PyGILState_Release(gil) }
        guard let fn = PyObject_GetAttrString(module, name) else { return Self.internalError() }
        defer { Py_DecRef(fn) }
        guard let tuple = PyTuple_New(args.count) else { return Self.internalError() }
        defer { Py_DecRef(tuple) }
        for (i, arg) in args.enumerated() {
            let item: UnsafeMutablePointer<PyObject>?
            switch arg {
            case .text(let s): item = PyUnicode_FromString(s)
            case .int(let v): item = PyLong_FromLong(v)
            }
            PyTuple_SetItem(tuple, i, item)  // steals the reference
        }
        guard let result = PyObject_CallObject(fn, tuple) else { return Self.internalError() }
        defer { Py_DecRef(result) }
        guard let utf8 = PyUnicode_AsUTF8(result) else { return Self.internalError() }
        return String(cString: utf8)
    }

    /// Only reached if the interpreter itself is broken: the bridge never raises.
    private static func internalError() -> String {
        PyErr_Print()
        return "{\"v\":1,\"error\":{\"code\":\"internal\",\"message\":\"the Python call failed (see the log)\"}}"
    }

    private static func field(_ json: String, _ key: String) -> Any? {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else { return nil }
        return obj[key]
    }
}
