/// Linux ioctl request numbers, computed the way `<asm-generic/ioctl.h>` does (x86_64 and arm64 use this layout):
/// `direction << 30 | size << 16 | type << 8 | number`, with 2 direction bits, 14 size bits, 8 type and 8 number bits.
public enum IOControl {
    /// `_IOC_NONE`.
    public static let none: UInt = 0
    /// `_IOC_WRITE`: user space writes, the kernel reads.
    public static let write: UInt = 1
    /// `_IOC_READ`: the kernel writes, user space reads.
    public static let read: UInt = 2

    static let numberShift: UInt = 0
    static let typeShift: UInt = 8
    static let sizeShift: UInt = 16
    static let directionShift: UInt = 30
    /// The largest argument size the 14 size bits hold.
    public static let maximumSize = (1 << 14) - 1

    /// `_IOC(direction, type, number, size)`.
    public static func request(direction: UInt, type: UInt8, number: UInt8, size: Int) -> UInt {
        precondition(size >= 0 && size <= maximumSize, "an ioctl argument of \(size) bytes does not fit 14 bits")
        return direction << directionShift | UInt(size) << sizeShift | UInt(type) << typeShift
            | UInt(number) << numberShift
    }

    /// `_IOWR(type, number, size)`.
    public static func readWrite(type: Character, number: UInt8, size: Int) -> UInt {
        request(direction: read | write, type: type.asciiValue!, number: number, size: size)
    }
}

/// A device's ioctl entry point: the kernel's in the guest, a stand-in in tests.
public protocol DeviceControl {
    /// Issues ioctl `request` with `argument`; returns 0 on success, else the errno.
    func control(_ request: UInt, _ argument: UnsafeMutableRawPointer) -> Int32
}

/// Little-endian field access in a C structure laid out in bytes (offsets are the named ABI constants).
extension UnsafeMutableRawBufferPointer {
    func storeLittleEndian<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= count)
        storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
    }

    func loadLittleEndian<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= count)
        return T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}
