import BinaryFormat

/// One member of an initramfs archive as cmk writes it: a directory, a regular file, a symbolic link or a character
/// device, owned by root (uid and gid 0), with permission bits and no timestamp.
public struct ArchiveMember: Sendable, Hashable {
    /// What the member is, with its contents.
    public enum Kind: Sendable, Hashable {
        case directory
        case file([UInt8])
        /// A symbolic link; the target is stored as the member's data, without a NUL.
        case symlink(target: String)
        /// A device node such as `/dev/console` (5, 1), which the kernel opens for init before devtmpfs is mounted.
        case characterDevice(major: UInt32, minor: UInt32)
    }

    /// The path inside the archive: relative, components separated by `/` ("bin/busybox").
    public let path: String
    public let kind: Kind
    /// The permission bits (`0o7777` at most); the file-type bits come from ``kind``.
    public let permissions: UInt32

    public init(path: String, kind: Kind, permissions: UInt32) {
        self.path = path
        self.kind = kind
        self.permissions = permissions & 0o7777
    }

    /// A directory, 0755 unless told otherwise.
    public static func directory(_ path: String, permissions: UInt32 = 0o755) -> ArchiveMember {
        ArchiveMember(path: path, kind: .directory, permissions: permissions)
    }

    /// A regular file, 0644 unless told otherwise.
    public static func file(_ path: String, _ contents: [UInt8], permissions: UInt32 = 0o644) -> ArchiveMember {
        ArchiveMember(path: path, kind: .file(contents), permissions: permissions)
    }

    /// A symbolic link (permissions 0777, as Linux reports every link).
    public static func symlink(_ path: String, target: String) -> ArchiveMember {
        ArchiveMember(path: path, kind: .symlink(target: target), permissions: 0o777)
    }

    /// A character device node.
    public static func characterDevice(
        _ path: String, major: UInt32, minor: UInt32, permissions: UInt32 = 0o600
    )
        -> ArchiveMember
    {
        ArchiveMember(path: path, kind: .characterDevice(major: major, minor: minor), permissions: permissions)
    }

    /// `st_mode`: the file-type bits (S_IFDIR 040000, S_IFREG 0100000, S_IFLNK 0120000, S_IFCHR 020000) and the
    /// permissions.
    public var mode: UInt32 {
        switch kind {
        case .directory: 0o040000 | permissions
        case .file: 0o100000 | permissions
        case .symlink: 0o120000 | permissions
        case .characterDevice: 0o020000 | permissions
        }
    }

    /// The bytes stored after the name: a file's contents, a link's target, nothing for the rest.
    public var data: [UInt8] {
        switch kind {
        case .file(let contents): contents
        case .symlink(let target): Array(target.utf8)
        case .directory, .characterDevice: []
        }
    }

    var isDirectory: Bool { if case .directory = kind { true } else { false } }
}

/// A cpio archive in the "new ASCII" format (newc: SVR4 without checksum, magic `070701`), the format Linux unpacks
/// as an initramfs (Linux Documentation/driver-api/early-userspace/buffer-format.rst; the header is the one GNU cpio
/// writes for `-H newc`), written so that the same members always give the same bytes:
///
/// - members sorted by the bytes of their path, so each directory comes before everything it holds; every parent
///   the caller did not name is added as a 0755 directory;
/// - uid, gid, mtime, device numbers and the check field are 0; inode numbers count from 1 in archive order;
///   directories have `nlink` 2 plus their subdirectories, everything else 1 (so no member reads as a hard link);
/// - each 110-byte header plus its NUL-terminated name is padded with zeros to a multiple of 4 bytes, and so is the
///   data; the `TRAILER!!!` record ends the archive, which is then padded with zeros to a multiple of 512 bytes.
public struct NewcArchive: Sendable, Hashable {
    public static let magic: [UInt8] = Array("070701".utf8)
    /// The magic and thirteen 8-digit hex fields.
    public static let headerSize = 110
    public static let fieldCount = 13
    public static let trailerName = "TRAILER!!!"
    /// The archive is padded to whole 512-byte blocks, as cpio writes it.
    public static let blockSize = 512
    /// Header, name and data each start on a 4-byte boundary.
    public static let alignment = 4
    /// The file-size field is 32 bits.
    public static let maximumDataSize = Int(UInt32.max)
    /// Linux's PATH_MAX, which the kernel's unpacker enforces on names.
    public static let maximumPathLength = 4095

    /// The members in archive order.
    public let members: [ArchiveMember]

    /// Validates the members, adds missing parent directories and sorts them.
    ///
    /// Throws ``GuestImageError/Code/badArchive`` for an absolute, empty or `..` path, a duplicate path, a member
    /// below something that is not a directory, or data larger than 4 GiB − 1.
    public init(_ members: [ArchiveMember]) throws(GuestImageError) {
        var byPath: [String: ArchiveMember] = [:]
        for member in members {
            try Self.validate(member)
            if byPath[member.path] != nil {
                throw GuestImageError(.badArchive, "the archive names '\(member.path)' twice")
            }
            byPath[member.path] = member
        }
        for member in members {
            var components = member.path.split(separator: "/", omittingEmptySubsequences: false).dropLast()
            while !components.isEmpty {
                let parent = components.joined(separator: "/")
                if let existing = byPath[parent] {
                    guard existing.isDirectory else {
                        throw GuestImageError(
                            .badArchive, "'\(member.path)' lies below '\(parent)', which is not a directory")
                    }
                } else {
                    byPath[parent] = .directory(parent)
                }
                components = components.dropLast()
            }
        }
        self.members = byPath.values.sorted { $0.path.utf8.lexicographicallyPrecedes($1.path.utf8) }
    }

    static func validate(_ member: ArchiveMember) throws(GuestImageError) {
        let path = member.path
        guard !path.isEmpty, path.utf8.count <= maximumPathLength else {
            throw GuestImageError(.badArchive, "an archive path must be 1 to \(maximumPathLength) bytes: '\(path)'")
        }
        guard !path.hasPrefix("/"), !path.utf8.contains(0), path != trailerName else {
            throw GuestImageError(
                .badArchive,
                "'\(path)' cannot be an archive path: paths are relative, without NUL, not the trailer name")
        }
        for component in path.split(separator: "/", omittingEmptySubsequences: false)
        where component.isEmpty || component == "." || component == ".." {
            throw GuestImageError(.badArchive, "'\(path)' has an empty, '.' or '..' component")
        }
        if case .symlink(let target) = member.kind, target.isEmpty || target.utf8.contains(0) {
            throw GuestImageError(.badArchive, "the link '\(path)' needs a target without NUL bytes")
        }
        guard member.data.count <= maximumDataSize else {
            throw GuestImageError(
                .badArchive, "'\(path)' holds \(member.data.count) bytes; newc stores at most 4 GiB − 1")
        }
    }

    /// The archive's bytes.
    public func encoded() -> [UInt8] {
        var subdirectories: [String: UInt32] = [:]
        for member in members where member.isDirectory {
            if let slash = member.path.lastIndex(of: "/") {
                subdirectories[String(member.path[..<slash]), default: 0] += 1
            }
        }
        var output: [UInt8] = []
        output.reserveCapacity(
            members.reduce(Self.blockSize) { $0 + Self.headerSize + $1.path.utf8.count + $1.data.count + 8 })
        for (index, member) in members.enumerated() {
            var device: (UInt32, UInt32) = (0, 0)
            if case .characterDevice(let major, let minor) = member.kind { device = (major, minor) }
            let data = member.data
            Self.appendRecord(
                to: &output, inode: UInt32(index + 1), mode: member.mode,
                nlink: member.isDirectory ? 2 + subdirectories[member.path, default: 0] : 1,
                rdev: device, name: member.path, data: data)
        }
        Self.appendRecord(to: &output, inode: 0, mode: 0, nlink: 1, rdev: (0, 0), name: Self.trailerName, data: [])
        output += [UInt8](repeating: 0, count: (Self.blockSize - output.count % Self.blockSize) % Self.blockSize)
        return output
    }

    static func appendRecord(
        to output: inout [UInt8], inode: UInt32, mode: UInt32, nlink: UInt32, rdev: (UInt32, UInt32), name: String,
        data: [UInt8]
    ) {
        let nameBytes = Array(name.utf8) + [0]
        // ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check
        let fields: [UInt32] = [
            inode, mode, 0, 0, nlink, 0, UInt32(data.count), 0, 0, rdev.0, rdev.1, UInt32(nameBytes.count), 0,
        ]
        output += magic
        for field in fields { output += hex8(field) }
        output += nameBytes
        pad(&output)
        output += data
        pad(&output)
    }

    static func pad(_ output: inout [UInt8]) {
        output += [UInt8](repeating: 0, count: (alignment - output.count % alignment) % alignment)
    }

    static let hexDigits = Array("0123456789abcdef".utf8)

    /// Eight lower-case hex digits, as GNU cpio prints them.
    static func hex8(_ value: UInt32) -> [UInt8] {
        (0..<8).map { hexDigits[Int(value >> (28 - 4 * UInt32($0)) & 0xF)] }
    }
}

/// One record read back from a newc archive, with every header field, so tests and audits can check what was written.
public struct NewcRecord: Sendable, Hashable {
    public let inode: UInt32
    public let mode: UInt32
    public let uid: UInt32
    public let gid: UInt32
    public let nlink: UInt32
    public let mtime: UInt32
    public let devMajor: UInt32
    public let devMinor: UInt32
    public let rdevMajor: UInt32
    public let rdevMinor: UInt32
    public let check: UInt32
    public let name: String
    public let data: [UInt8]
    /// Where the record's header starts in the archive.
    public let offset: Int
}

extension NewcArchive {
    /// Reads every record before the trailer.
    ///
    /// Throws ``GuestImageError/Code/badArchive`` on a wrong magic, a field that is not 8 hex digits, a name without
    /// its terminating NUL, non-zero padding, truncation, a missing trailer, or a non-zero byte after the trailer
    /// (concatenated archives, which the kernel would accept, are not read here).
    public static func records(in bytes: [UInt8]) throws(GuestImageError) -> [NewcRecord] {
        var cursor = ByteCursor(bytes)
        var records: [NewcRecord] = []
        do {
            while true {
                let start = cursor.offset
                let magicBytes = try cursor.readBytes(magic.count, field: "c_magic")
                guard magicBytes == magic else {
                    throw GuestImageError(
                        .badArchive,
                        "the record at offset \(start) starts with "
                            + "'\(String(decoding: magicBytes, as: UTF8.self))', not 070701"
                    )
                }
                var fields: [UInt32] = []
                for name in [
                    "c_ino", "c_mode", "c_uid", "c_gid", "c_nlink", "c_mtime", "c_filesize", "c_devmajor",
                    "c_devminor", "c_rdevmajor", "c_rdevminor", "c_namesize", "c_check",
                ] {
                    let digits = try cursor.readBytes(8, field: name)
                    guard let value = UInt32(String(decoding: digits, as: UTF8.self), radix: 16),
                        digits.allSatisfy({ hexDigits.contains($0 | 0x20) })
                    else {
                        throw GuestImageError(
                            .badArchive, "\(name) of the record at offset \(start) is not 8 hex digits")
                    }
                    fields.append(value)
                }
                let nameSize = Int(fields[11])
                let nameBytes = try cursor.readBytes(nameSize, field: "c_name")
                guard nameSize >= 1, nameBytes.last == 0, !nameBytes.dropLast().contains(0) else {
                    throw GuestImageError(
                        .badArchive, "the name of the record at offset \(start) is not one NUL-terminated string")
                }
                try skipPadding(&cursor)
                let name = String(decoding: nameBytes.dropLast(), as: UTF8.self)
                let data = try cursor.readBytes(Int(fields[6]), field: "file data of \(name)")
                try skipPadding(&cursor)
                if name == trailerName { break }
                records.append(
                    NewcRecord(
                        inode: fields[0], mode: fields[1], uid: fields[2], gid: fields[3], nlink: fields[4],
                        mtime: fields[5],
                        devMajor: fields[7], devMinor: fields[8], rdevMajor: fields[9], rdevMinor: fields[10],
                        check: fields[12], name: name, data: data, offset: start))
            }
            try cursor.readReserved(cursor.remaining, field: "padding after the trailer")
        } catch let error as BinaryFormatError {
            throw GuestImageError(.badArchive, "the archive cannot be read: \(error.description)")
        } catch let error as GuestImageError {
            throw error
        } catch {
            throw GuestImageError(.badArchive, "the archive cannot be read: \(error)")
        }
        return records
    }

    static func skipPadding(_ cursor: inout ByteCursor) throws(BinaryFormatError) {
        let count = (alignment - cursor.offset % alignment) % alignment
        try cursor.readReserved(min(count, cursor.remaining), field: "padding")
    }
}
