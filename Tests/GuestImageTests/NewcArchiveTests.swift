import CMKTesting
import Foundation
import GuestImage
import Testing

/// A small archive with one member of each kind, in an order the writer must fix.
let sampleMembers: [ArchiveMember] = [
    .file("usr/share/b.txt", Array("second\n".utf8)),
    .file("init", Array("#!/bin/sh\necho hi\n".utf8), permissions: 0o755),
    .symlink("bin/sh", target: "/bin/busybox"),
    .file("bin/busybox", [0x7F, 0x45, 0x4C, 0x46, 1, 2, 3], permissions: 0o755),
    .directory("tmp", permissions: 0o1777),
    .characterDevice("dev/console", major: 5, minor: 1),
    .file("a-b", []),
]

@Suite("newc cpio archives")
struct NewcArchiveTests {
    @Test("members are sorted by path bytes, with every missing parent added before its contents")
    func sortedWithParents() throws {
        let archive = try NewcArchive(sampleMembers)
        #expect(
            archive.members.map(\.path) == [
                "a-b", "bin", "bin/busybox", "bin/sh", "dev", "dev/console", "init", "tmp", "usr", "usr/share",
                "usr/share/b.txt",
            ])
        let records = try NewcArchive.records(in: archive.encoded())
        for (index, record) in records.enumerated() {
            let parent = (record.name as NSString).deletingLastPathComponent
            if !parent.isEmpty {
                let parentIndex = try #require(records.firstIndex(where: { $0.name == parent }))
                #expect(parentIndex < index, "\(parent) must precede \(record.name)")
            }
        }
    }

    @Test("headers carry inode numbers from 1, mode, nlink, zero owner, time and check, as GNU cpio's newc")
    func headerFields() throws {
        let bytes = try NewcArchive(sampleMembers).encoded()
        #expect(Array(bytes.prefix(6)) == Array("070701".utf8))
        let records = try NewcArchive.records(in: bytes)
        #expect(records.map(\.inode) == Array(1...UInt32(records.count)))
        for record in records {
            #expect(record.uid == 0 && record.gid == 0 && record.mtime == 0 && record.check == 0)
            #expect(record.devMajor == 0 && record.devMinor == 0)
        }
        func record(_ name: String) throws -> NewcRecord { try #require(records.first(where: { $0.name == name })) }
        #expect(try record("bin").mode == 0o040755)
        #expect(try record("bin").nlink == 2)
        #expect(try record("usr").nlink == 3)  // usr/share is a subdirectory
        #expect(try record("tmp").mode == 0o041777)
        #expect(try record("init").mode == 0o100755)
        #expect(try record("init").nlink == 1)
        #expect(try record("bin/sh").mode == 0o120777)
        #expect(try record("bin/sh").data == Array("/bin/busybox".utf8))
        #expect(try record("dev/console").mode == 0o020600)
        #expect(try record("dev/console").rdevMajor == 5 && record("dev/console").rdevMinor == 1)
        // The header is lower-case hex, as GNU cpio prints it.
        let header = String(decoding: bytes[6..<110], as: UTF8.self)
        #expect(header == header.lowercased())
    }

    @Test("header and name, and data, are padded to 4 bytes; the trailer ends it; the archive fills 512-byte blocks")
    func padding() throws {
        let bytes = try NewcArchive([.file("x", [1, 2, 3, 4, 5])]).encoded()
        #expect(bytes.count == 512)
        // "x" header: 110 + 2 ("x\0") = 112, aligned; 5 data bytes + 3 padding.
        #expect(bytes[110] == UInt8(ascii: "x") && bytes[111] == 0)
        #expect(Array(bytes[112..<117]) == [1, 2, 3, 4, 5])
        #expect(Array(bytes[117..<120]) == [0, 0, 0])
        #expect(Array(bytes[120..<126]) == Array("070701".utf8))
        let trailerName = Array("TRAILER!!!".utf8) + [0]
        #expect(Array(bytes[230..<241]) == trailerName)
        // 230 + 11 = 241, padded to 244; then zeros to 512.
        #expect(bytes[241...].allSatisfy { $0 == 0 })
    }

    @Test("paths that are absolute, empty, '..', duplicated or below a file are refused")
    func invalidPaths() {
        let cases: [[ArchiveMember]] = [
            [.file("/etc/passwd", [])],
            [.file("", [])],
            [.file("a/../b", [])],
            [.file("a//b", [])],
            [.file("./a", [])],
            [.file("a", []), .file("a", [1])],
            [.file("a", []), .file("a/b", [])],
            [.symlink("l", target: "")],
            [.file("TRAILER!!!", [])],
        ]
        for members in cases {
            #expect(throws: GuestImageError.self, "\(members.map(\.path))") { try NewcArchive(members) }
        }
    }

    @Test("the same members in any order give the same bytes")
    func orderIndependent() throws {
        let forward = try NewcArchive(sampleMembers).encoded()
        let backward = try NewcArchive(sampleMembers.reversed()).encoded()
        #expect(forward == backward)
    }

    @Test("GNU cpio lists every member with its type, mode, owner and link target")
    func gnuCpioLists() throws {
        let bytes = try NewcArchive(sampleMembers).encoded()
        let output = try ExternalTool.run(
            URL(fileURLWithPath: "/usr/bin/cpio"), ["-t", "-v", "--quiet"], input: Data(bytes))
        #expect(output.status == 0, "\(output.standardError)")
        let lines = output.standardOutput.split(separator: "\n").map(String.init)
        #expect(lines.count == 11)
        #expect(lines.contains(where: { $0.hasPrefix("lrwxrwxrwx") && $0.hasSuffix("bin/sh -> /bin/busybox") }))
        #expect(
            lines.contains(where: { $0.hasPrefix("crw-------") && $0.contains("5,") && $0.hasSuffix("dev/console") }))
        #expect(lines.contains(where: { $0.hasPrefix("drwxrwxrwt") && $0.hasSuffix("tmp") }))
        #expect(lines.contains(where: { $0.hasPrefix("-rwxr-xr-x") && $0.hasSuffix(" init") }))
        #expect(lines.allSatisfy { $0.contains(" root ") && ($0.contains("1970") || $0.contains("1969")) })
    }

    @Test("GNU cpio extracts files, links and folders with the written contents and modes")
    func gnuCpioExtracts() throws {
        // Device nodes need root to create; the listing test covers them.
        let members = sampleMembers.filter { if case .characterDevice = $0.kind { false } else { true } }
        let bytes = try NewcArchive(members).encoded()
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let output = try ExternalTool.run(
            URL(fileURLWithPath: "/usr/bin/cpio"),
            [
                "-i", "--make-directories", "--no-absolute-filenames", "--preserve-modification-time", "--quiet", "-D",
                directory.path,
            ],
            input: Data(bytes))
        #expect(output.status == 0, "\(output.standardError)")
        let fm = FileManager.default
        for member in members {
            let path = directory.appendingPathComponent(member.path).path
            switch member.kind {
            case .file(let contents):
                #expect(fm.contents(atPath: path) == Data(contents), "\(member.path)")
                let attributes = try fm.attributesOfItem(atPath: path)
                #expect(
                    (attributes[.posixPermissions] as? Int).map(UInt32.init) == member.permissions, "\(member.path)")
                #expect((attributes[.modificationDate] as? Date) == Date(timeIntervalSince1970: 0))
            case .symlink(let target):
                #expect(try fm.destinationOfSymbolicLink(atPath: path) == target)
            case .directory:
                var isDirectory: ObjCBool = false
                #expect(fm.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue)
            case .characterDevice:
                Issue.record("filtered out above")
            }
        }
    }

    @Test("the reader reads what GNU cpio writes with -H newc")
    func readsGNUCpioOutput() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.createDirectory(
            at: directory.appendingPathComponent("d"), withIntermediateDirectories: true)
        try Data("hello".utf8).write(to: directory.appendingPathComponent("d/f"))
        try FileManager.default.createSymbolicLink(
            atPath: directory.appendingPathComponent("l").path, withDestinationPath: "d/f")
        let output = try ExternalTool.run(
            URL(fileURLWithPath: "/bin/sh"),
            ["-c", "cd '\(directory.path)' && printf 'd\\nd/f\\nl\\n' | cpio -o -H newc --quiet | od -An -v -tx1"])
        #expect(output.status == 0, "\(output.standardError)")
        let bytes = output.standardOutput.split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap {
            UInt8($0, radix: 16)
        }
        let records = try NewcArchive.records(in: bytes)
        #expect(records.map(\.name) == ["d", "d/f", "l"])
        #expect(records[1].data == Array("hello".utf8))
        #expect(records[2].mode & 0o170000 == 0o120000 && records[2].data == Array("d/f".utf8))
    }

    @Test("the reader rejects every truncation, a bad magic, a non-hex field and bytes after the trailer")
    func readerRejectsDamage() throws {
        let bytes = try NewcArchive([.file("f", [1, 2, 3]), .symlink("l", target: "f")]).encoded()
        #expect(try NewcArchive.records(in: bytes).count == 2)
        let trailerEnd = try #require(bytes.lastIndex(where: { $0 != 0 })) + 1
        for length in 0..<trailerEnd {
            #expect(throws: GuestImageError.self, "truncated to \(length)") {
                try NewcArchive.records(in: Array(bytes.prefix(length)))
            }
        }
        var badMagic = bytes
        badMagic[5] = UInt8(ascii: "2")  // 070702 is the CRC variant
        #expect(throws: GuestImageError.self) { try NewcArchive.records(in: badMagic) }
        var badHex = bytes
        badHex[6] = UInt8(ascii: "g")
        #expect(throws: GuestImageError.self) { try NewcArchive.records(in: badHex) }
        var trailing = bytes
        trailing[trailing.count - 1] = 1
        #expect(throws: GuestImageError.self) { try NewcArchive.records(in: trailing) }
    }
}

/// A fresh folder under the system's temporary folder.
func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("cmk-image-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
