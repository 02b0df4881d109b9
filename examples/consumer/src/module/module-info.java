/** An application that uses panama-batchnorm as a module. */
module dev.panamabn.consumer {
    requires dev.panamabn;
}
