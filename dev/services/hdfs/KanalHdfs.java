/*
 * Starts a single-node HDFS (one namenode, one datanode) from Hadoop's MiniDFSCluster for
 * dev/stack: namenode RPC and WebHDFS on fixed ports, data kept under BASEDIR across
 * restarts (formatted only on the first start). Permissions stay on, so a directory a
 * user may not write to behaves as on a real cluster; the root is world-writable.
 *
 * Usage: java -cp <lib>/*:<dir> KanalHdfs BASEDIR HOST RPC_PORT HTTP_PORT
 */
import java.io.File;
import java.util.concurrent.CountDownLatch;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.permission.FsPermission;
import org.apache.hadoop.hdfs.MiniDFSCluster;

public final class KanalHdfs {
    private KanalHdfs() {}

    public static void main(String[] args) throws Exception {
        File base = new File(args[0]).getAbsoluteFile();
        String host = args[1];
        boolean fresh = !new File(base, "data").exists();
        Configuration conf = new Configuration();
        conf.set("dfs.namenode.rpc-bind-host", host);
        conf.set("dfs.namenode.http-bind-host", host);
        conf.set("dfs.namenode.http-address", host + ":" + args[3]);
        conf.setBoolean("dfs.webhdfs.enabled", true);
        conf.setInt("dfs.replication", 1);
        conf.setBoolean("dfs.permissions.enabled", true);
        // a development node on a shared disk: never enter safe mode for low space
        conf.setLong("dfs.namenode.resource.du.reserved", 0L);
        MiniDFSCluster cluster = new MiniDFSCluster.Builder(conf, base)
            .nameNodePort(Integer.parseInt(args[2]))
            .nameNodeHttpPort(Integer.parseInt(args[3]))
            .numDataNodes(1)
            .format(fresh)
            .manageNameDfsDirs(true)
            .manageDataDfsDirs(true)
            .checkDataNodeHostConfig(true)
            .build();
        cluster.waitActive();
        FileSystem fs = cluster.getFileSystem();
        fs.setPermission(new Path("/"), new FsPermission((short) 0777));
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                cluster.shutdown();
            } finally {
                stopped.countDown();
            }
        }));
        System.out.println("KanalHdfs: started, WebHDFS on http://" + host + ":" + args[3] + "/webhdfs/v1");
        stopped.await();
    }
}
